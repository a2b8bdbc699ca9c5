# A thin wrapper over CMake. `make run` and `make test` install what is missing (as root, from
# Debian's archive), configure, build, and run.

BUILD_DIR ?= build
ASAN_DIR ?= build-asan
FUZZ_DIR ?= build-fuzz
JOBS ?= $(shell nproc)
# Warnings are errors in the builds `make test` makes (it sets WERROR=ON), not in `make run`'s,
# which a newer compiler with new warnings must not stop.
WERROR ?= OFF

BUILD_PKGS := cmake make gcc pkg-config android-libboringssl-dev libuv1-dev node-llhttp libyaml-dev
TEST_PKGS := $(BUILD_PKGS) clang libclang-rt-14-dev openssl curl nodejs python3 \
             python3-websockets procps iproute2

# $(call install_missing,PACKAGES): installs the packages dpkg does not have yet.
define install_missing
	@missing=""; \
	for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "stapler needs these Debian packages:$$missing"; \
	    echo "run as root, or: sudo apt-get install$$missing"; exit 1; \
	  fi; \
	  echo "installing:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing >/dev/null; } || \
	    { echo "apt-get could not install:$$missing"; exit 1; }; \
	fi
endef

.PHONY: all build run test deps deps-test asan fuzz clean

all: build

deps:
	$(call install_missing,$(BUILD_PKGS))

deps-test:
	$(call install_missing,$(TEST_PKGS))

build: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DSTAPLER_WERROR=$(WERROR) >/dev/null
	cmake --build $(BUILD_DIR) -j$(JOBS)

run: build
	./$(BUILD_DIR)/stapler $(ARGS)

asan: deps-test
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DSTAPLER_SANITIZE=ON \
	  -DSTAPLER_WERROR=$(WERROR) >/dev/null
	cmake --build $(ASAN_DIR) -j$(JOBS)

fuzz: deps-test
	CC=clang cmake -S . -B $(FUZZ_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTAPLER_FUZZ=ON \
	  -DSTAPLER_WERROR=$(WERROR) >/dev/null
	cmake --build $(FUZZ_DIR) -j$(JOBS)

# The whole suite: unit and integration tests on the release build and again under
# AddressSanitizer + UndefinedBehaviorSanitizer, then a short run of every fuzz target.
test: deps-test
	$(MAKE) --no-print-directory build WERROR=ON
	$(MAKE) --no-print-directory asan WERROR=ON
	$(MAKE) --no-print-directory fuzz WERROR=ON
	ctest --test-dir $(BUILD_DIR) --output-on-failure
	ctest --test-dir $(ASAN_DIR) --output-on-failure
	ctest --test-dir $(FUZZ_DIR) --output-on-failure

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(FUZZ_DIR)
