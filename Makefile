# baton: the two commands of the quick start, and the steps they share.
#
#   make demo   install what is missing, build, run the demo
#   make speech-demo   the same for the speech demo (launch/speech-demo.sh)
#   make test   install what is missing, build (release + ASan/UBSan),
#               run every test through ctest
#
# Both start with launch/install-deps.sh (apt-get, only missing packages).

BUILD   ?= build
ASAN    ?= build-asan
JOBS    ?= $(shell nproc)
PYENV   ?= $(abspath $(BUILD))/pyenv
CTEST_J ?= 2

.PHONY: all deps build build-asan pyenv test test-fast demo speech-demo docs-check clean

all: build

deps:
	@bash launch/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DBATON_PYTHON_ENV=$(PYENV) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

# Unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer
# (CPU only: the CUDA code is compiled by the release build).
build-asan: deps
	@cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBATON_SANITIZE=ON -DBATON_CUDA=OFF -DBATON_PYTHON_ENV=$(PYENV) >/dev/null
	@cmake --build $(ASAN) -j$(JOBS)

pyenv: deps
	@bash tests/pyenv.sh $(PYENV)

test: build build-asan pyenv
	cd $(BUILD) && ctest --output-on-failure -j$(CTEST_J)
	cd $(ASAN) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j$(CTEST_J) -L unit

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j$(CTEST_J) -L unit

demo: build
	@bash launch/demo.sh $(BUILD)

# Speech recognition end to end (a few minutes on 2 cores; exit status 3
# when this build cannot export speech models yet).
speech-demo: build
	@bash launch/speech-demo.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN)
