# Two entry points, each creating the environment itself on a fresh machine:
#   make demo   - the main job: the demo on the shipped demo model (CPU is enough)
#   make test   - the static check of the TensorRT code, then the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# CPU torch and onnxruntime by default; GPU users: make TORCH_SPEC=torch EXTRAS=dev,gpu
TORCH_SPEC ?= torch==2.13.0
EXTRAS     ?= dev,cpu

.PHONY: demo test lint env clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

env: $(VENV)/.installed

demo: env
	$(VENV)/bin/tcpade-trt demo

test: env
	$(PY) scripts/fetch_tritonserver.py  # Triton's server binary for the Triton tests (they skip without it)
	PY=$(PY) bash scripts/typecheck_tensorrt.sh
	$(PY) -m pytest -q

lint: env
	$(VENV)/bin/ruff check tcpade_trt tests research

clean:
	rm -rf $(VENV) demo-out engines
