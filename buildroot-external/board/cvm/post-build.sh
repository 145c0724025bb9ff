#!/bin/sh
# Buildroot post-build script of cvm_defconfig: called with the target
# directory as $1, before the cpio image is made. It refuses an image whose
# /init would not start the agent: no shell is there to run anything else,
# and a dynamically linked agent would find no loader.
set -eu

target=${1:?usage: post-build.sh TARGET_DIR}
agent=${target}/usr/bin/cvm-agent

fail() {
	echo "post-build.sh: $*" >&2
	exit 1
}

[ -x "${agent}" ] || fail "${agent} is missing: is BR2_PACKAGE_CVM_AGENT set?"
[ "$(readlink "${target}/init")" = "usr/bin/cvm-agent" ] ||
	fail "/init is not the symlink to usr/bin/cvm-agent from the overlay"

# Static: no program interpreter and no shared library needed.
if readelf --program-headers "${agent}" | grep -q INTERP; then
	fail "${agent} is dynamically linked (it has a program interpreter)"
fi
if readelf --dynamic "${agent}" | grep -q NEEDED; then
	fail "${agent} needs shared libraries"
fi

# The agent mounts its file systems on these (init mode); the skeleton makes
# most of them, this makes sure of all.
for dir in dev proc sys run tmp; do
	mkdir -p "${target}/${dir}"
done
