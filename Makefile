# Shortcuts for tasks.py (which does the work, with the standard library only).
# make report ARGS="--quick"   make test ARGS="-q -x"   make lint
.PHONY: report test lint setup
ARGS ?=

report:
	python3 tasks.py report $(ARGS)

test:
	python3 tasks.py test $(ARGS)

lint:
	python3 tasks.py lint

setup:
	python3 tasks.py setup
