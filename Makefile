# Two commands do everything, as root on Debian or Ubuntu:
#   make demo   install, bring up flannel-vxlan, show it, ping pod to pod across nodes, take it down
#   make test   install (with test tools), run the test suite
LAB := .venv/bin/lab
PY := .venv/bin/python

.PHONY: demo test deps test-deps bench clean

demo: deps
	$(LAB) up flannel-vxlan
	$(LAB) status flannel-vxlan; \
	$(LAB) ping --lab flannel-vxlan default/bs1 default/bs8; rc=$$?; \
	$(LAB) down flannel-vxlan; exit $$rc

test: test-deps
	$(PY) -m pytest -v -rs tests

deps:
	bash scripts/install-deps.sh

test-deps:
	bash scripts/install-deps.sh --test

bench: deps
	$(PY) scripts/bench_up.py

clean:
	-$(LAB) cleanup
	rm -rf .venv build *.egg-info
