# make perf   set up .venv (once) and run the suite on the embedded model: the results table
# make test   set up .venv (once) and run the suite's own tests (what CI runs)
# Extra pytest arguments: make perf ARGS="-k accel --batch-sizes 1,8,32"
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1

.PHONY: perf test
perf: $(VENV)/.installed
	$(PY) -m pytest perf $(ARGS)

test: $(VENV)/.installed
	@$(PY) -m pytest -ra $(ARGS); rc=$$?; \
	if [ $$rc = 5 ]; then echo "make test: pytest collected no tests (exit 5): is tests/ in this checkout?" >&2; fi; \
	exit $$rc

# torch first and pinned: 2.13.0 is a CPU build on these machines; a bare `torch` requirement
# would pull a multi-GB CUDA build. Then the project itself, editable, at the tested versions.
$(VENV)/.installed: pyproject.toml constraints.txt
	@echo "make: creating $(VENV) (torch 2.13.0 CPU build, then the suite and its dependencies; a few minutes)"
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[plot,test]'
	@echo "make: $(VENV) is ready"
	touch $@
