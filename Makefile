# flowpic: `make` builds ./flowpic, `make test` runs every test, `make demo` the main job.
# OPENMP=1 adds -fopenmp; CC=clang works too. CI adds WERROR=1.
CC      ?= cc
OPT     ?= -O2
WARN    = -std=c99 -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion \
          -Wstrict-prototypes -Wmissing-prototypes -Wcast-qual -Wundef -Wdouble-promotion -Wformat=2
ifeq ($(WERROR),1)
WARN   += -Werror
endif
ifeq ($(OPENMP),1)
OMPFLAG = -fopenmp
endif
CFLAGS  ?=
ALL_CFLAGS = $(WARN) $(OPT) $(OMPFLAG) $(CFLAGS)
LDLIBS  = -lm
HEADERS = flowpic.h pcap_lite.h
TEST_SRC = tests/run_tests.c tests/test_pcap.c tests/test_flows.c tests/test_blocks.c tests/test_dataset.c tests/capbuild.c tests/impl.c
FUZZ_TARGETS ?= pcap dataset model
SANITIZE = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g
BUILD   = build

.PHONY: all check test-matrix test-valgrind test-big test test-unit test-faults test-limits test-train test-nn test-vectors test-fuzz-replay test-oracle test-online test-sanitize demo bench fuzz clean

all: flowpic

flowpic: examples/flowpic.c $(HEADERS)
	$(CC) $(ALL_CFLAGS) -o $@ examples/flowpic.c $(LDLIBS)

$(BUILD)/run_tests: $(TEST_SRC) tests/harness.h tests/capbuild.h tests/restamp.h $(HEADERS)
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -I. -o $@ $(TEST_SRC) $(LDLIBS)

# Fault injection: every allocation, read and write of each path fails in turn.
$(BUILD)/test_faults: tests/test_faults.c tests/capbuild.c tests/capbuild.h $(HEADERS)
	@mkdir -p $(BUILD)/faults
	$(CC) $(ALL_CFLAGS) -I. -Itests -o $@ tests/test_faults.c tests/capbuild.c $(LDLIBS)

test-faults: $(BUILD)/test_faults
	@mkdir -p build/faults
	$(BUILD)/test_faults

# The named limits, lowered so that each can be crossed: its own error, no allocation of its size.
$(BUILD)/test_limits: tests/test_limits.c tests/capbuild.c tests/capbuild.h $(HEADERS)
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -I. -Itests -o $@ tests/test_limits.c tests/capbuild.c $(LDLIBS)

test-limits: $(BUILD)/test_limits
	$(BUILD)/test_limits

$(BUILD)/fuzz_replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(HEADERS)
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -I. -o $@ tests/fuzz/fuzz_$*.c tests/fuzz/replay.c $(LDLIBS)

# The unit, network, fault and CLI tests, the training, experiment, tshark and labels oracles, the
# online script (pipe, --follow, live capture) and the > 4 GiB captures (the CLI built with ASan +
# UBSan) and the fuzz corpora under ASan + UBSan.
test-sanitize: $(TEST_SRC) $(HEADERS) $(BUILD)/big_capture
	@mkdir -p $(BUILD)
	$(CC) $(WARN) -O1 $(SANITIZE) -I. -o $(BUILD)/run_tests_san $(TEST_SRC) $(LDLIBS)
	$(BUILD)/run_tests_san
	$(CC) $(WARN) -O1 $(SANITIZE) -I. -o $(BUILD)/test_nn_san tests/test_nn.c $(LDLIBS)
	$(BUILD)/test_nn_san
	$(CC) $(WARN) -O1 $(SANITIZE) -I. -o $(BUILD)/test_online_san tests/test_online.c $(LDLIBS)
	$(BUILD)/test_online_san
	@mkdir -p build/faults
	$(CC) $(WARN) -O1 $(SANITIZE) -I. -Itests -o $(BUILD)/test_faults_san tests/test_faults.c tests/capbuild.c $(LDLIBS)
	$(BUILD)/test_faults_san
	$(CC) $(WARN) -O1 $(SANITIZE) -I. -Itests -o $(BUILD)/test_limits_san tests/test_limits.c tests/capbuild.c $(LDLIBS)
	$(BUILD)/test_limits_san
	$(CC) $(WARN) -O1 $(SANITIZE) -o $(BUILD)/flowpic_san examples/flowpic.c $(LDLIBS)
	FLOWPIC=$(BUILD)/flowpic_san sh tests/cli_tests.sh
	FLOWPIC=$(BUILD)/flowpic_san sh tests/train_test.sh
	FLOWPIC=$(BUILD)/flowpic_san sh tests/experiment_test.sh
	FLOWPIC=$(BUILD)/flowpic_san sh tests/oracle_tshark.sh
	FLOWPIC=$(BUILD)/flowpic_san sh tests/oracle_labels.sh
	FLOWPIC=$(BUILD)/flowpic_san sh tests/online_test.sh
	FLOWPIC=$(BUILD)/flowpic_san GEN=$(BUILD)/big_capture sh tests/big_test.sh
	for t in $(FUZZ_TARGETS); do \
	    $(CC) $(WARN) -O1 $(SANITIZE) -I. -o $(BUILD)/fuzz_replay_san_$$t tests/fuzz/fuzz_$$t.c tests/fuzz/replay.c $(LDLIBS) && \
	    $(BUILD)/fuzz_replay_san_$$t tests/fuzz/corpus/$$t || exit 1; done

# Hardening, next to make test in CI (about 11 minutes on 2 busy cores, beside test-sanitize): the
# build matrix, valgrind memcheck over every test (test-valgrind), > 4 GiB through a pipe.
check: test-matrix test-valgrind test-big

# gcc/clang/C++, FLOWPIC_STATIC, FLOWPIC_NO_STDIO, custom allocators, OpenMP, the examples.
test-matrix:
	sh tests/build_matrix.sh

# A capture of more than 4 GiB through a pipe, twice (pcap, pcapng): 64-bit offsets and counters.
$(BUILD)/big_capture: tests/big_capture.c
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -o $@ tests/big_capture.c

test-big: $(BUILD)/big_capture flowpic
	GEN=$(BUILD)/big_capture sh tests/big_test.sh

VALGRIND = valgrind -q --vgdb=no --leak-check=full --errors-for-leak-kinds=all --error-exitcode=99
# The CLI under the shell tests: one valgrind log per process in $(VG_LOGS) (world-writable: some
# cases run the CLI as user nobody), and tests/valgrind_logs.sh fails the step when a log is not
# empty, whatever the script made of the exit status.
VG_LOGS = $(BUILD)/valgrind
VG_CLI = $(VALGRIND) --log-file=$(CURDIR)/$(VG_LOGS)/%p.log ./flowpic
# Memcheck, leaks included: the unit, fault, limit, network and online-classifier tests (but the
# second thread, which needs OpenMP); the CLI's golden tests but
# sigint-eval (it reads the CLI's byte count from /proc, which valgrind's own reads inflate); the
# tshark and labels oracles; the training and experiment tests in their reduced mode (the mini net,
# FLOWPIC_REDUCED=1 in tests/lib.sh); the online script (pipe, --follow, live capture).
test-valgrind: $(BUILD)/run_tests $(BUILD)/test_faults $(BUILD)/test_limits $(BUILD)/test_nn $(BUILD)/test_online flowpic
	@mkdir -p build/faults
	$(VALGRIND) $(BUILD)/run_tests
	$(VALGRIND) $(BUILD)/test_faults
	$(VALGRIND) $(BUILD)/test_limits
	$(VALGRIND) $(BUILD)/test_nn
	$(VALGRIND) $(BUILD)/test_online
	@rm -rf $(VG_LOGS) && mkdir -p $(VG_LOGS) && chmod 1777 $(VG_LOGS)
	CLI_SKIP=sigint-eval FLOWPIC="$(VG_CLI)" sh tests/cli_tests.sh && sh tests/valgrind_logs.sh $(VG_LOGS)
	FLOWPIC="$(VG_CLI)" sh tests/oracle_tshark.sh && sh tests/valgrind_logs.sh $(VG_LOGS)
	FLOWPIC="$(VG_CLI)" sh tests/oracle_labels.sh && sh tests/valgrind_logs.sh $(VG_LOGS)
	FLOWPIC_REDUCED=1 FLOWPIC="$(VG_CLI)" sh tests/train_test.sh && sh tests/valgrind_logs.sh $(VG_LOGS)
	FLOWPIC_REDUCED=1 FLOWPIC="$(VG_CLI)" sh tests/experiment_test.sh && sh tests/valgrind_logs.sh $(VG_LOGS)
	FLOWPIC="$(VG_CLI)" sh tests/online_test.sh && sh tests/valgrind_logs.sh $(VG_LOGS)

test: test-unit test-faults test-limits test-nn test-fuzz-replay test-oracle test-train test-online

# Train on ../shared/data, classify held-out files; thread determinism of training; the
# experiment command against the plain pipeline's block and flow counts.
test-train: flowpic
	sh tests/train_test.sh
	sh tests/experiment_test.sh

# The network: PyTorch's reference tensors (../shared/vectors or $$FLOWPIC_VECTORS_DIR), gradient
# checks, naive vs blocked convolution, thread determinism, training, model files.
$(BUILD)/test_nn: tests/test_nn.c $(HEADERS)
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -I. -o $@ tests/test_nn.c $(LDLIBS)

test-nn: $(BUILD)/test_nn
	$(BUILD)/test_nn

# The online classifier: the same decisions as offline, early decisions, idle timeout, eviction, a
# flood of a million 5-tuples under the memory bound (tests/test_online.c, counting allocator),
# the second classifier thread (OpenMP build, when the compiler has OpenMP);
# then the CLI: a pipe, --follow on a growing file, live capture on a veth pair in network
# namespaces of its own (tests/online_test.sh; needs root and iproute2, skips otherwise).
$(BUILD)/test_online: tests/test_online.c tests/harness.h $(HEADERS)
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -I. -o $@ tests/test_online.c $(LDLIBS)

test-online: $(BUILD)/test_online flowpic
	$(BUILD)/test_online
	@if $(CC) $(WARN) $(OPT) -fopenmp -I. -o $(BUILD)/test_online_omp tests/test_online.c $(LDLIBS) 2> /dev/null; then \
	    echo "$(BUILD)/test_online_omp second_thread"; OMP_WAIT_POLICY=passive $(BUILD)/test_online_omp second_thread; \
	else echo "test_online: $(CC) has no OpenMP here: the second classifier thread is not tested"; fi
	sh tests/online_test.sh

test-vectors: $(BUILD)/test_nn
	$(BUILD)/test_nn vectors

test-unit: $(BUILD)/run_tests flowpic
	$(BUILD)/run_tests
	sh tests/cli_tests.sh

test-fuzz-replay: $(FUZZ_TARGETS:%=$(BUILD)/fuzz_replay_%)
	for t in $(FUZZ_TARGETS); do $(BUILD)/fuzz_replay_$$t tests/fuzz/corpus/$$t || exit 1; done

test-oracle: flowpic
	sh tests/oracle_tshark.sh
	sh tests/oracle_labels.sh

# libFuzzer (clang): make fuzz FUZZ_SECONDS=600 [FUZZ_TARGETS=model]
FUZZ_SECONDS ?= 60
# New inputs go to build/fuzz-corpus; crashes to build/ (copy them into tests/fuzz/corpus/pcap
# so that `make test` replays them). Seeds: the committed corpus and the shared captures.
fuzz:
	for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(BUILD)/fuzz-corpus-$$t && \
	    clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -o $(BUILD)/fuzz_$$t tests/fuzz/fuzz_$$t.c && \
	    $(BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=$$([ $$t = model ] && echo 400000 || echo 65536) \
	        -artifact_prefix=$(BUILD)/$$t- \
	        $(BUILD)/fuzz-corpus-$$t tests/fuzz/corpus/$$t || exit 1; done

demo: flowpic
	sh examples/demo.sh

bench: flowpic
	sh tests/bench.sh

clean:
	rm -rf $(BUILD) flowpic
