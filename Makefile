# The two commands a new user types: `make demo` and `make test`. Both run `make setup` first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
MPIRUN ?= mpirun
# Open MPI refuses root and more ranks than cores unless told; containers and CI are both.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1
export PRTE_MCA_rmaps_default_mapping_policy := :oversubscribe
# Containers often forbid the cross-memory-attach syscall with which the shared-memory transport
# copies a message once: there (the probe says none) it must copy twice. A value you set wins.
ifeq ($(origin OMPI_MCA_btl_vader_single_copy_mechanism)$(shell python3 heal_mpi/single_copy.py),undefinednone)
export OMPI_MCA_btl_vader_single_copy_mechanism := none
export OMPI_MCA_btl_sm_single_copy_mechanism := none
endif
PYTEST := $(PY) -m pytest -p no:cacheprovider -q

.PHONY: setup demo test test-serial test-mpi bench docs validation-elevator validation-heal validation-heal-tables validation-heal-noniid validation-heal-noniid-tables validation-lift validation-time validation-time-tables slurm-up slurm-down clean

setup:
	@bash jobs/setup.sh

demo: setup
	bash jobs/demo.sh

test: setup
	$(MAKE) --no-print-directory test-serial test-mpi

test-serial:
	$(PYTEST) tests

# The same suite's cross-rank tests, once on an even and once on an odd rank count.
test-mpi:
	$(MPIRUN) -n 2 $(PY) -m pytest -p no:cacheprovider -q --with-mpi -m mpi tests
	$(MPIRUN) -n 3 $(PY) -m pytest -p no:cacheprovider -q --with-mpi -m mpi tests

bench: setup
	$(VENV)/bin/heal-mpi bench all

# Rewrite the README's config reference from the dataclasses (tests/test_readme.py checks it is current).
docs:
	$(PY) -c "from heal_mpi.config import update_readme; update_readme('README.md')"

# The Elevator paper's topology (jobs/validation/elevator): Elevator, Elevator top-c and Newscast at
# N = 1000 under no fault, a 50 % crash, churn and a hub attack, and Elevator again in PeerSim's
# cycle order (the *_seq* runs, compared in their own table). Runs what is missing (finished
# outputs are skipped), then rewrites the tables and figures from the stored view snapshots.
ELV := jobs/validation/elevator
ELV_RESULTS := results/validation_elevator
validation-elevator: setup
	$(PY) jobs/sweep.py $(ELV)/sweep.toml --local
	$(PY) jobs/sweep.py $(ELV)/sweep_peersim.toml --local
	$(PY) analysis/topology.py $$(ls $(ELV_RESULTS)/*.h5 | grep -v _seq) --summary --no-per-file-plots --out $(ELV)/laptop
	$(PY) analysis/recovery.py $$(ls $(ELV_RESULTS)/*.h5 | grep -v _seq) --shares 0.99,0.5 --out $(ELV)/laptop
	$(PY) analysis/semantics.py $(ELV_RESULTS)/*.h5 --shares 0.99,0.5 --out $(ELV)/laptop
	$(PY) analysis/embed_table.py $(ELV)/README.md topology $(ELV)/laptop/topology_summary.md
	$(PY) analysis/embed_table.py $(ELV)/README.md recovery $(ELV)/laptop/recovery.md
	$(PY) analysis/embed_table.py $(ELV)/README.md semantics $(ELV)/laptop/semantics.md

# The LIFT table, its cycle-semantics comparison and the HEAL-under-attack table (jobs/validation/lift):
# runs what is missing (finished outputs are skipped), then rewrites the tables and figures from the
# HDF5 files.
LIFT := jobs/validation/lift
validation-lift: setup
	$(PY) jobs/sweep.py jobs/configs/byzantine/sweep_laptop.toml --local
	$(PY) jobs/sweep.py jobs/configs/byzantine/sweep_sequential.toml --local
	$(PY) jobs/sweep.py jobs/configs/byzantine/sweep_sequential_peersim.toml --local
	$(PY) jobs/sweep.py jobs/configs/byzantine/sweep_heal_under_attack.toml --local
	$(PY) analysis/byzantine.py results/byzantine_laptop/*.h5 --out $(LIFT)/lift
	$(PY) analysis/semantics.py results/byzantine_laptop/*.h5 results/byzantine_sequential/*.h5 --out $(LIFT)/lift
	$(PY) analysis/attack_table.py $(LIFT)/runs/heal_under_attack/*.h5 --out $(LIFT)/heal_under_attack
	$(PY) analysis/embed_table.py $(LIFT)/README.md lift $(LIFT)/lift/byzantine.md
	$(PY) analysis/embed_table.py $(LIFT)/README.md semantics $(LIFT)/lift/semantics.md
	$(PY) analysis/embed_table.py $(LIFT)/README.md heal-under-attack $(LIFT)/heal_under_attack/attack_table.md
	$(PY) analysis/embed_table.py README.md lift $(LIFT)/lift/byzantine.md
	$(PY) analysis/embed_table.py README.md heal-under-attack $(LIFT)/heal_under_attack/attack_table.md

# New (issue 20): simulated time (jobs/validation/time): HEAL, FedAvg, GL and EL on the HEAL task in
# simulated seconds: equal devices, lognormal devices, a deadline, asynchronous GL and EL, slow and
# fast hubs. The runs are committed under $(TIME)/runs: what is finished is skipped, a cut run
# resumes; then the tables and figures are rewritten (devices.py rewrites the device files first).
TIME := jobs/validation/time
validation-time: setup
	$(PY) $(TIME)/devices.py
	for s in devices waits placement async; do $(PY) jobs/sweep.py $(TIME)/sweep_$$s.toml --local || exit 1; done
	$(MAKE) --no-print-directory validation-time-tables

validation-time-tables:
	$(PY) analysis/report.py $(TIME)/runs/*/*.h5 --out $(TIME)/figures --targets 0.75 0.8 > /dev/null
	for part in time_to_accuracy stragglers; do \
		$(PY) analysis/embed_table.py $(TIME)/README.md $$part $(TIME)/figures/$$part.md || exit 1; done

# The HEAL paper's comparison (jobs/validation/heal): LeNet-5 on Fashion-MNIST (60 rounds, one seed)
# and the tabular task in full. The LeNet-5 runs are committed under $(HEAL)/runs (the tabular ones,
# minutes each, are not): what is finished is skipped, a cut run resumes from its checkpoint;
# then the tables and figures are rewritten.
HEAL := jobs/validation/heal
validation-heal: setup
	$(PY) jobs/sweep.py $(HEAL)/sweep_lenet.toml --local
	$(PY) jobs/sweep.py $(HEAL)/sweep_lenet_fault_free.toml --local
	$(PY) jobs/sweep.py $(HEAL)/sweep_logreg.toml --local
	$(MAKE) --no-print-directory validation-heal-tables

validation-heal-tables:
	$(call heal-table,$(HEAL)/runs/lenet/*.h5 $(HEAL)/runs/lenet_fault_free/*.h5,$(HEAL)/lenet,--paper mnist --targets 0.75 0.8)
	$(call heal-table,$(HEAL)/runs/logreg/*.h5,$(HEAL)/logreg,--paper spambase --targets 0.85 0.9)
	for t in lenet logreg; do for part in final_accuracy to_target work claims; do \
		$(PY) analysis/embed_table.py $(HEAL)/README.md $$t-$$part $(HEAL)/$$t/$$part.md || exit 1; done; done

# $(call heal-table,FILES,OUT,OPTIONS): analysis/heal_table.py on the files that exist (none yet: the tables stay)
heal-table = files="$(wildcard $(1))"; if [ -n "$$files" ]; then $(PY) analysis/heal_table.py $$files $(3) --out $(2); \
	else echo "no runs match $(1) yet: the tables in $(2) stay as they are"; fi

# New: the same comparison under Dirichlet(0.1) label skew (jobs/validation/heal-noniid).
NONIID := jobs/validation/heal-noniid
validation-heal-noniid: setup
	$(PY) jobs/sweep.py $(NONIID)/sweep.toml --local
	$(MAKE) --no-print-directory validation-heal-noniid-tables

validation-heal-noniid-tables:
	$(call heal-table,$(NONIID)/runs/*.h5,$(NONIID)/tables,--targets 0.5 0.7)
	if [ -d $(NONIID)/tables ]; then for part in final_accuracy to_target work claims; do \
		$(PY) analysis/embed_table.py $(NONIID)/README.md $$part $(NONIID)/tables/$$part.md || exit 1; done; fi

# A real one-node Slurm on this machine (root; installs Debian's slurm and munge if missing).
slurm-up:
	@bash jobs/slurm/local_cluster.sh up

slurm-down:
	@bash jobs/slurm/local_cluster.sh down

clean:
	rm -rf results/ .pytest_cache build *.egg-info
