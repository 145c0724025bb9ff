include $(sort $(wildcard $(BR2_EXTERNAL_CVM_PATH)/package/*/*.mk))

# cvm-agent links tpm2-tss statically, so the TCTI loader must not dlopen()
# its TCTIs: --enable-nodl links them in. External .mk files are read after
# Buildroot's own, so this adds to package/tpm2-tss's options.
ifeq ($(BR2_PACKAGE_CVM_AGENT),y)
TPM2_TSS_CONF_OPTS += --enable-nodl

# Every static TCTI archive defines Tss2_Tcti_Info: linking several of them
# into one binary is a duplicate symbol. tctildr does not use it with
# --enable-nodl, so it is made local to each archive.
define TPM2_TSS_LOCALIZE_TCTI_INFO
	for lib in $(STAGING_DIR)/usr/lib/libtss2-tcti-*.a; do \
		$(TARGET_OBJCOPY) --localize-symbol=Tss2_Tcti_Info $$lib || exit 1; \
	done
endef
TPM2_TSS_POST_INSTALL_STAGING_HOOKS += TPM2_TSS_LOCALIZE_TCTI_INFO
endif
