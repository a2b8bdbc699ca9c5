# A thin wrapper over CMake. `make run` and `make test` install what is missing (as root, from
# Debian's archive), configure, build, and run.

BUILD_DIR ?= build
ASAN_DIR ?= build-asan
TSAN_DIR ?= build-tsan
FUZZ_DIR ?= build-fuzz
JOBS ?= $(shell nproc)
# BORINGSSL=fast: link Debian's own BoringSSL rebuilt without OPENSSL_SMALL (about a minute
# the first time; see docker/build-boringssl.sh) instead of the installed package's build.
BORINGSSL ?= debian
BSSL_FAST_DIR := $(abspath $(BUILD_DIR))/boringssl-fast
ifeq ($(BORINGSSL),fast)
  BSSL_CMAKE := -DSTAPLER_BORINGSSL_DIR=$(BSSL_FAST_DIR)
else
  BSSL_CMAKE := -DSTAPLER_BORINGSSL_DIR=
endif
# Warnings are errors in the builds `make test` makes (it sets WERROR=ON), not in `make run`'s,
# which a newer compiler with new warnings must not stop.
WERROR ?= OFF

BUILD_PKGS := cmake make gcc pkg-config android-libboringssl-dev libuv1-dev node-llhttp libyaml-dev \
              libnghttp2-dev
TEST_PKGS := $(BUILD_PKGS) clang libclang-rt-14-dev openssl curl nodejs python3 \
             python3-websockets python3-h11 python3-h2 nghttp2-client chromium procps iproute2

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

.PHONY: all build run test deps deps-test asan tsan fuzz clean

all: build

deps:
	$(call install_missing,$(BUILD_PKGS))

deps-test:
	$(call install_missing,$(TEST_PKGS))

build: deps
ifeq ($(BORINGSSL),fast)
	sh docker/build-boringssl.sh $(BSSL_FAST_DIR)
endif
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(BSSL_CMAKE) \
	  -DSTAPLER_WERROR=$(WERROR) >/dev/null
	cmake --build $(BUILD_DIR) -j$(JOBS)

run: build
	./$(BUILD_DIR)/stapler $(ARGS)

asan: deps-test
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DSTAPLER_SANITIZE=ON \
	  -DSTAPLER_WERROR=$(WERROR) >/dev/null
	cmake --build $(ASAN_DIR) -j$(JOBS)

tsan: deps-test
	cmake -S . -B $(TSAN_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTAPLER_TSAN=ON \
	  -DSTAPLER_WERROR=$(WERROR) >/dev/null
	cmake --build $(TSAN_DIR) -j$(JOBS)

fuzz: deps-test
	CC=clang cmake -S . -B $(FUZZ_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTAPLER_FUZZ=ON \
	  -DSTAPLER_WERROR=$(WERROR) >/dev/null
	cmake --build $(FUZZ_DIR) -j$(JOBS)

# The whole suite: unit and integration tests on the release build and again under
# AddressSanitizer + UndefinedBehaviorSanitizer, the multi-threaded ones under
# ThreadSanitizer, then a replay of every fuzz target's corpus and a short run of each.
test: deps-test
	$(MAKE) --no-print-directory build WERROR=ON
	$(MAKE) --no-print-directory asan WERROR=ON
	$(MAKE) --no-print-directory tsan WERROR=ON
	$(MAKE) --no-print-directory fuzz WERROR=ON
	ctest --test-dir $(BUILD_DIR) --output-on-failure
	ctest --test-dir $(ASAN_DIR) --output-on-failure
	ctest --test-dir $(TSAN_DIR) --output-on-failure
	ctest --test-dir $(FUZZ_DIR) --output-on-failure

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(TSAN_DIR) $(FUZZ_DIR)
