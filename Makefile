# Two commands do everything, as root on Debian or Ubuntu:
#   make demo   install; flannel-vxlan: show it, ping pod to pod across nodes; then NetworkPolicy with
#               kube-router: isolate namespace x and print the probe truth table; take both down; then
#               compare the modes: the quick modes-latency-throughput experiment and its HTML report
#   make test   install (with test tools), check style (ruff) and types (mypy), then run the test suite:
#               first the part that needs no root (golden dry-runs and CLI help, bad-input tables, loader,
#               plans; a broken loader fails here), then
#               the kernel round-trips (tests marked needs_root). The loader fuzzing: fixed seed, a few
#               hundred examples. Regenerate the golden files after an intended change with
#               LAB_GOLDEN_UPDATE=1 .venv/bin/python -m pytest tests/golden (then review git diff)
#   make fuzz   the loader fuzzing's long profile: thousands of random inputs (LAB_FUZZ_PROFILE=long)
LAB := .venv/bin/lab
PY := .venv/bin/python

.PHONY: demo test fuzz typecheck lint deps test-deps bench clean

demo: deps
	$(LAB) up flannel-vxlan
	$(LAB) status flannel-vxlan; \
	$(LAB) ping --lab flannel-vxlan default/bs1 default/bs8; rc=$$?; \
	$(LAB) down flannel-vxlan; [ $$rc -eq 0 ] || exit $$rc
	$(LAB) up netpol-xyz-kuberouter
	$(LAB) apply --lab netpol-xyz-kuberouter -f examples/policies/xyz-deny-ingress-x.yaml; \
	$(LAB) apply --lab netpol-xyz-kuberouter -f examples/policies/xyz-allow-y-to-xa-80.yaml; \
	$(LAB) probe --lab netpol-xyz-kuberouter --port 80 --protocol TCP; rc=$$?; \
	$(LAB) down netpol-xyz-kuberouter; [ $$rc -eq 0 ] || exit $$rc
	$(LAB) experiment run modes-latency-throughput --quick --out results
	$(LAB) report results/modes-latency-throughput

test: test-deps
	$(PY) -m ruff check lab tests scripts
	$(PY) -m mypy
	$(PY) -m pytest -v -rs -m "not needs_root" tests/golden tests
	$(PY) -m pytest -v -rs -m needs_root tests

fuzz: test-deps
	LAB_FUZZ_PROFILE=long $(PY) -m pytest -v --hypothesis-show-statistics tests/test_loader_fuzz.py

# ruff and mypy as pyproject.toml configures them ([tool.ruff], [tool.mypy]); `make test` (.ci/run) runs both first
typecheck: test-deps
	$(PY) -m mypy

lint: test-deps
	$(PY) -m ruff check lab tests scripts

deps:
	bash scripts/install-deps.sh

test-deps:
	bash scripts/install-deps.sh --test

bench: deps
	$(PY) scripts/bench_up.py
	$(PY) scripts/bench_bgp.py
	$(PY) scripts/bench_policy.py
	$(PY) scripts/bench_loader.py
	$(PY) scripts/bench_experiment.py
	$(PY) scripts/bench_datapath.py

clean:
	-$(LAB) cleanup
	rm -rf .venv build *.egg-info
