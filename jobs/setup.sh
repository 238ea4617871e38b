#!/usr/bin/env bash
# One idempotent set-up for a laptop, CI or a cluster login node (called by `make setup`).
#   1. system packages (Debian/Ubuntu only: Open MPI, parallel HDF5, Fashion-MNIST)
#   2. .venv with mpi4py, numpy, torch
#   3. h5py built against parallel HDF5 when one is found (else plain h5py, with a warning)
#   4. heal_mpi itself, editable, with the test and analysis extras
# On a cluster without apt, load your MPI and HDF5 modules first: mpicc and the parallel
# HDF5 found through pkg-config or HDF5_DIR are used as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
say() { printf '[setup] %s\n' "$*"; }

APT_PACKAGES="openmpi-bin libopenmpi-dev libhdf5-openmpi-dev pkg-config dataset-fashion-mnist"
if command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1; then
    missing=""
    for p in $APT_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        say "installing system packages:$missing"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
    fi
else
    say "no apt-get: using the MPI and HDF5 already on PATH (e.g. from 'module load')"
fi
command -v mpicc >/dev/null 2>&1 || { say "ERROR: mpicc not found; install or load an MPI implementation"; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
have() { "$VENV/bin/python" -c "$1" >/dev/null 2>&1; }

if ! have "import mpi4py, numpy, torch, cython, pkgconfig, setuptools, wheel"; then
    say "installing mpi4py, numpy, torch and build tools into $VENV"
    # torch 2.13.0: the CPU wheel available offline on the development machines; any torch 2.x works.
    pip install mpi4py numpy cython pkgconfig "setuptools>=77" wheel "torch==2.13.0"
fi

# Parallel HDF5: Debian's hdf5-openmpi pkg-config name, or a cluster module exporting HDF5_DIR.
hdf5_pc=""
for name in hdf5-openmpi hdf5-mpich; do
    pkg-config --exists "$name" 2>/dev/null && { hdf5_pc=$name; break; }
done
if ! have "import h5py"; then
    if [ -n "$hdf5_pc" ] || [ -n "${HDF5_DIR:-}" ]; then
        say "building h5py against parallel HDF5 (${hdf5_pc:-HDF5_DIR=$HDF5_DIR}); this compiles for a few minutes"
        env CC=mpicc HDF5_MPI=ON ${hdf5_pc:+HDF5_PKGCONFIG_NAME=$hdf5_pc} \
            "$VENV/bin/python" -m pip --disable-pip-version-check -q \
            install --no-build-isolation --no-binary=h5py h5py
    else
        say "WARNING: no parallel HDF5 found; installing serial h5py (rank 0 will write all output)"
        pip install h5py
    fi
fi

if ! have "import heal_mpi, pytest, pytest_mpi, matplotlib, networkx, scipy" \
   || [ setup.cfg -nt "$VENV/.heal_mpi_installed" ] || [ pyproject.toml -nt "$VENV/.heal_mpi_installed" ]; then
    say "installing heal_mpi (editable) with its test and analysis extras"
    pip install --no-build-isolation -e ".[test,analysis]"
    touch "$VENV/.heal_mpi_installed"
fi

"$VENV/bin/heal-mpi" info
