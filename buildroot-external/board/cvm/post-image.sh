#!/bin/sh
# Buildroot post-image script of cvm_defconfig: called with BINARIES_DIR as
# $1. It prints the SHA-256 of the kernel and the initramfs (what owners pin,
# with cvmctl measure, through the launch measurement) and writes
# start-qemu.sh next to them.
set -eu

images=${1:?usage: post-image.sh BINARIES_DIR}
for f in bzImage rootfs.cpio.gz; do
	[ -f "${images}/${f}" ] || {
		echo "post-image.sh: ${images}/${f} is missing" >&2
		exit 1
	}
done
(cd "${images}" && sha256sum bzImage rootfs.cpio.gz)

# The manifest, when one was built in, is where the agent is told to find it.
manifest_arg=
if [ -f "${TARGET_DIR:-/nonexistent}/etc/cvm-agent/manifest.json" ]; then
	manifest_arg=" cvm.manifest=/etc/cvm-agent/manifest.json"
fi

cat >"${images}/start-qemu.sh" <<SCRIPT
#!/bin/sh
# Boots the cvm-agent image (written by board/cvm/post-image.sh).
#
#   ./start-qemu.sh [QEMU ARGUMENTS...]
#
# Without SNP: QEMU with the kernel and the initramfs, a serial console,
# virtio-rng, and the agent's port 7002 forwarded to 127.0.0.1:\${CVM_PORT:-7002}
# only (the agent, as PID 1, gives eth0 the address user networking expects:
# cvm.net=eth0=10.0.2.15/24). Add a vTPM with, for example (swtpm socket --tpm2 --ctrl
# type=unixio,path=tpm.sock):
#   -chardev socket,id=chrtpm,path=tpm.sock -tpmdev emulator,id=tpm0,chardev=chrtpm
#   -device tpm-crb,tpmdev=tpm0
# QEMU_ACCEL picks the accelerator (default tcg; kvm where it works).
#
# On an SEV-SNP host: CVM_OVMF=/path/to/OVMF.fd (an SEV-capable OVMF build)
# launches an SNP guest under KVM, with the kernel, initramfs and command
# line measured through OVMF (kernel-hashes=on). Needs QEMU 9.1 or newer.
# Not tested by the project (no SNP hardware there).
set -eu
dir=\$(cd "\$(dirname "\$0")" && pwd)
append="console=ttyS0 panic=-1 cvm.net=eth0=10.0.2.15/24${manifest_arg} \${CVM_APPEND:-}"
set -- -nographic -no-reboot -m \${CVM_MEMORY:-1G} -smp \${CVM_VCPUS:-2} \\
	-kernel "\$dir/bzImage" -initrd "\$dir/rootfs.cpio.gz" -append "\$append" \\
	-device virtio-rng-pci \\
	-netdev user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:\${CVM_PORT:-7002}-:7002 \\
	-device virtio-net-pci,netdev=n0 \\
	"\$@"
if [ -n "\${CVM_OVMF:-}" ]; then
	exec qemu-system-x86_64 -accel kvm -cpu EPYC-v4 \\
		-machine q35,confidential-guest-support=sev0,memory-backend=ram0 \\
		-object memory-backend-memfd,id=ram0,size=\${CVM_MEMORY:-1G},share=true \\
		-object sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,kernel-hashes=on \\
		-bios "\$CVM_OVMF" "\$@"
fi
exec qemu-system-x86_64 -accel "\${QEMU_ACCEL:-tcg}" -machine q35 -cpu max "\$@"
SCRIPT
chmod 0755 "${images}/start-qemu.sh"
echo "post-image.sh: wrote ${images}/start-qemu.sh"
