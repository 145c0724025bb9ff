################################################################################
#
# cvm-agent
#
################################################################################

# The pinned release: a tarball of the project's Cargo workspace with its
# crates already vendored (VENDOR/ and .cargo/config.toml, as Buildroot's
# cargo download step would make them), so Buildroot verifies the hash of the
# very file the project publishes. scripts/release-tarball makes it. The
# name is not the default of cargo packages (NAME-VERSION-cargoN.tar.gz, for
# archives Buildroot vendored itself).
CVM_AGENT_VERSION = 0.1.0
# check-package disable RemoveDefaultPackageSourceVariable
CVM_AGENT_SOURCE = cvm-agent-$(CVM_AGENT_VERSION).tar.gz
CVM_AGENT_SITE = https://example.invalid/cvm-agent/releases/download/v$(CVM_AGENT_VERSION)
CVM_AGENT_LICENSE = Apache-2.0
CVM_AGENT_SUBDIR = agent
CVM_AGENT_DEPENDENCIES = host-pkgconf tpm2-tss

# tss-esapi-sys finds tpm2-tss through pkg-config: static libraries (with
# their private dependencies, libcrypto), and pkg-config of the target while
# cross-compiling from the host. CVM_TSS2_STATIC tells agent/build.rs where
# the static TCTIs are, which the TCTI loader (built without dlopen) calls
# but its pkg-config file does not list.
CVM_AGENT_CARGO_ENV = \
	PKG_CONFIG_ALL_STATIC=1 \
	PKG_CONFIG_ALLOW_CROSS=1 \
	CVM_TSS2_STATIC=$(STAGING_DIR)/usr

# With CVM_AGENT_OVERRIDE_SRCDIR (local.mk) a checkout is rsynced instead:
# never its build output.
CVM_AGENT_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = --exclude target

CVM_AGENT_MANIFEST = $(call qstrip,$(BR2_PACKAGE_CVM_AGENT_MANIFEST))
ifneq ($(CVM_AGENT_MANIFEST),)
define CVM_AGENT_INSTALL_MANIFEST
	$(INSTALL) -D -m 0644 $(CVM_AGENT_MANIFEST) \
		$(TARGET_DIR)/etc/cvm-agent/manifest.json
endef
CVM_AGENT_POST_INSTALL_TARGET_HOOKS += CVM_AGENT_INSTALL_MANIFEST
endif

$(eval $(cargo-package))
