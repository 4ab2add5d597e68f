#include "tools/cli.h"
int cmd_tokenize(int a, char **v) { (void)a; (void)v; return 1; }
int cmd_generate(int a, char **v) { (void)a; (void)v; return 1; }
int cmd_quantize(int a, char **v) { (void)a; (void)v; return 1; }
int cmd_profile(int a, char **v) { (void)a; (void)v; return 1; }
int cmd_perplexity(int a, char **v) { (void)a; (void)v; return 1; }
int cmd_bench(int a, char **v) { (void)a; (void)v; return 1; }
