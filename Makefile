# spikeq — build, test and bench. `make` builds build/spikeq; `make test` runs every test;
# `make ARCH=aarch64` cross-builds NEON with aarch64-linux-gnu-gcc (tests run under qemu).
ARCH ?= $(shell uname -m)
ifeq ($(ARCH),aarch64)
  ifneq ($(shell uname -m),aarch64)
    CC := aarch64-linux-gnu-gcc
    # creating a thread hangs under qemu-user here: one OpenMP thread per test process, and
    # .spq checksums verified on read instead of by a background thread
    RUN := qemu-aarch64 -L /usr/aarch64-linux-gnu -E OMP_NUM_THREADS=1 -E SPIKEQ_VERIFY=sync
  endif
  B ?= build-aarch64
  ISA_SRC := kernels/neon.c kernels/avx2.c kernels/avx512.c
  ISA_FLAGS_neon := -march=armv8.2-a+dotprod
  ISA_FLAGS_peak_neon := $(ISA_FLAGS_neon)
else
  B ?= build
  ISA_SRC := kernels/avx2.c kernels/avx512.c
  ISA_FLAGS_avx2 := -mavx2 -mfma -mf16c
  ISA_FLAGS_avx512 := -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512dq -mfma -mf16c
endif
CC ?= cc
SAN ?=
OPT ?= -O3 -g
# -fPIC: the same objects make libspikeq.a and libspikeq.so; hidden visibility: the .so
# exports only the public API (include/spikeq.h, SPIKEQ_API)
CFLAGS = $(OPT) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fopenmp -fPIC -fvisibility=hidden -I. $(SAN)
LDLIBS := -lsleef -lcjson -lpcre2-8 -lxxhash -lm -fopenmp $(SAN)

KERN_SRC := kernels/dispatch.c kernels/team.c kernels/pack.c kernels/numfmt.c kernels/blocks.c kernels/scalar.c $(ISA_SRC)
ifneq ($(ARCH),aarch64)
  KERN_SRC += kernels/neon.c
endif
# the library's folders, bottom up (docs/architecture.md; tests/test_layers.sh checks the order)
LIB_DIRS := base tok format runtime quant api
LIB_SRC := $(KERN_SRC) $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(B)/%.o)
# the machine probes serve the benchmarks (spikeq bench, bench_gemm), not the library
PROBE_OBJ := $(B)/probe/probes.o $(B)/probe/peak_scalar.o $(B)/probe/peak_x86.o $(B)/probe/peak_neon.o
TESTS := $(patsubst tests/%.c,$(B)/tests/%,$(wildcard tests/test_*.c))
ifeq ($(ARCH),aarch64)
  # under qemu: the kernels (bit-exactness of NEON vs scalar) and the quantisation path;
  # the model tests are slow under emulation (and gcc 12's aarch64 vectoriser ICEs on them)
  TESTS := $(B)/tests/test_kernels $(B)/tests/test_quant $(B)/tests/test_cmpq
endif
BENCH := $(B)/bench/bench_gemm

.SECONDARY:
.PHONY: all test test-unit test-sanitize test-install install clean deps deps-cross run bench fuzz fuzz-build
all: $(B)/spikeq $(BENCH) $(B)/libspikeq.so

$(B)/%.o: %.c $(wildcard */*.h) include/spikeq.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ISA_FLAGS_$(basename $(notdir $<))) -c $< -o $@

$(B)/libspikeq.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(B)/libspikeq.so: $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libspikeq.so.0 -o $@ $^ $(LDLIBS)

TOOL_OBJ := $(patsubst %.c,$(B)/%.o,$(wildcard tools/*.c))
$(B)/spikeq: $(TOOL_OBJ) $(PROBE_OBJ) $(B)/libspikeq.a
	$(CC) -o $@ $^ $(LDLIBS) -lmicrohttpd

$(B)/tests/%: $(B)/tests/%.o $(PROBE_OBJ) $(B)/libspikeq.a
	$(CC) -o $@ $^ $(LDLIBS) -lcmocka

$(B)/bench/bench_gemm: $(B)/bench/bench_gemm.o $(PROBE_OBJ) $(B)/libspikeq.a
	$(CC) -o $@ $^ $(LDLIBS)

# install: the header, both libraries and spikeq.pc under PREFIX (DESTDIR for staging)
PREFIX ?= /usr/local
install: $(B)/libspikeq.a $(B)/libspikeq.so $(B)/spikeq
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/spikeq.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(B)/libspikeq.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(B)/libspikeq.so $(DESTDIR)$(PREFIX)/lib/libspikeq.so.0
	ln -sf libspikeq.so.0 $(DESTDIR)$(PREFIX)/lib/libspikeq.so
	install -m 755 $(B)/spikeq $(DESTDIR)$(PREFIX)/bin/
	sed 's|@PREFIX@|$(PREFIX)|' tools/spikeq.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/spikeq.pc

# an outside program against the installed library: examples/simple.c built with pkg-config
# (shared and static), its greedy text equal to spikeq generate --temp 0's; the header
# compiled as C++
test-install:
	@sh tests/test_install.sh

# deps: install the Debian packages the build needs when their headers are missing.
deps:
	@sh tools/deps.sh

deps-cross:
	@sh tools/deps.sh cross

test: deps deps-cross
	@$(MAKE) --no-print-directory test-unit
	@$(MAKE) --no-print-directory test-install
	@$(MAKE) --no-print-directory test-sanitize
	@$(MAKE) --no-print-directory ARCH=aarch64 test-unit
	@$(MAKE) --no-print-directory -j2 fuzz

test-unit: $(TESTS) $(B)/spikeq
	@sh tests/run.sh "$(RUN)" $(TESTS) $(if $(RUN),,tests/test_layers.sh:all tests/test_cli.sh:$(B)/spikeq tests/test_serve.sh:$(B)/spikeq) $(if $(filter build,$(B)),tests/test_eval.sh:$(B)/spikeq tests/test_docs.sh:all)

# unit tests again under AddressSanitizer + UBSan, in their own build folder
test-sanitize:
	@$(MAKE) --no-print-directory B=build-san OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" test-unit

# libFuzzer targets (clang, ASan + UBSan): each runs FUZZ_SECONDS (10; 30 when CI=true) from
# the seeds in fuzz/corpus/T and the regression inputs in fuzz/regress/T, growing its corpus in
# build-fuzz/corpus/T; a crash stops it and leaves build-fuzz/crash-T-*. `make -j2 fuzz` runs
# two at a time. Checksums are skipped in this build (FUZZING_BUILD_MODE_...) so mutations
# reach the parsers behind them.
FUZZ_TARGETS := spq gguf hf tokjson encode evaltask request
FUZZ_SECONDS ?= $(if $(filter true,$(CI)),30,10)
FUZZ_SAN := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
fuzz: $(FUZZ_TARGETS:%=fuzz-run-%)
fuzz-build:
	@sh tools/deps.sh fuzz
	@$(MAKE) --no-print-directory B=build-fuzz CC=clang OPT="-O1 -g -fno-omit-frame-pointer" SAN="$(FUZZ_SAN)" \
	  $(FUZZ_TARGETS:%=build-fuzz/fuzz/fuzz_%)
fuzz-run-%: fuzz-build
	@sh fuzz/run.sh $* $(FUZZ_SECONDS)
$(B)/fuzz/fuzz_evaltask: $(B)/fuzz/fuzz_evaltask.o $(B)/tools/eval_tasks.o $(B)/libspikeq.a
	$(CC) -o $@ $^ $(LDLIBS) -fsanitize=fuzzer
$(B)/fuzz/fuzz_request: $(B)/fuzz/fuzz_request.o $(B)/tools/serve_req.o $(B)/libspikeq.a
	$(CC) -o $@ $^ $(LDLIBS) -fsanitize=fuzzer
$(B)/fuzz/fuzz_%: $(B)/fuzz/fuzz_%.o $(B)/libspikeq.a
	$(CC) -o $@ $^ $(LDLIBS) -fsanitize=fuzzer

bench: $(BENCH)
	$(BENCH)

run: deps $(B)/spikeq
	$(B)/spikeq generate -m models/docs-llama-28m-w8a8.spq -p "The Linux kernel" -n 64

clean:
	rm -rf build build-san build-aarch64 build-fuzz
