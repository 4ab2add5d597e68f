/* eval_tasks.h — the zero-shot task files (HellaSwag, PIQA, ARC, OpenBookQA, COPA, BoolQ,
 * WinoGrande, LAMBADA) as lists of requests: a context and a continuation each. */
#ifndef SPQ_EVAL_TASKS_H
#define SPQ_EVAL_TASKS_H

/* How a task's items are scored (lm-evaluation-harness's output types). */
enum {
    EV_CHOICE, /* one context, several choices: the gold choice scores highest */
    EV_WINO,   /* several contexts, one continuation: the gold context scores highest */
    EV_GREEDY, /* one context, one continuation: every token is the greedy prediction */
};

typedef struct {
    int n;          /* choices (EV_CHOICE), contexts (EV_WINO), 1 (EV_GREEDY) */
    char **context; /* n strings (EV_CHOICE, EV_GREEDY: all the same pointer) */
    char **cont;    /* n strings (EV_WINO, EV_GREEDY: all the same pointer) */
    int gold;
} ev_item;

typedef struct {
    const char *name;
    int kind, acc_norm; /* acc_norm: the harness reports it for this task */
    ev_item *items;
    int n_items;
} ev_task;

/* Names of the known tasks, comma-separated. */
extern const char ev_task_names[];
/* Load task `name` from the files in dir (at most limit items when limit > 0). On error
 * returns -1 with a one-line message naming the file and line in err. */
int ev_task_load(const char *dir, const char *name, int limit, ev_task *t, char *err, int errlen);
void ev_task_free(ev_task *t);

#endif
