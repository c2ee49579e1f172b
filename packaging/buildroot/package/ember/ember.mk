################################################################################
#
# ember
#
################################################################################

EMBER_VERSION = 0.1.0
EMBER_SITE = $(call github,ember-ipc,ember,v$(EMBER_VERSION))
EMBER_LICENSE = MIT or Apache-2.0
EMBER_LICENSE_FILES = LICENSE-MIT LICENSE-APACHE
EMBER_INSTALL_STAGING = YES

# The C library and the command; the other workspace members are tests and tools.
EMBER_CARGO_BUILD_OPTS = -p ember-ipc-c -p ember-ipc-cli

# Where cargo-package's build leaves them.
EMBER_BUILT = $(@D)/target/$(RUSTC_TARGET_NAME)/release

# The layout of `cargo xtask dist --prefix /usr` (packaging/dist-files.txt), which
# `cargo xtask test` checks these lines against; $(1) is the staging or target directory.
# target-finalize takes the headers, static library, pkg-config file and man page out of
# the target again unless the configuration keeps them.
define EMBER_INSTALL_FILES
	$(INSTALL) -D -m 0755 $(EMBER_BUILT)/emberctl $(1)/usr/bin/emberctl
	$(INSTALL) -D -m 0644 $(@D)/bindings-c/include/ember.h $(1)/usr/include/ember.h
	$(INSTALL) -D -m 0644 $(EMBER_BUILT)/libember.a $(1)/usr/lib/libember.a
	$(INSTALL) -D -m 0755 $(EMBER_BUILT)/libember.so $(1)/usr/lib/libember.so.$(EMBER_VERSION)
	ln -sf libember.so.$(EMBER_VERSION) $(1)/usr/lib/libember.so.0
	ln -sf libember.so.0 $(1)/usr/lib/libember.so
	$(INSTALL) -d $(1)/usr/lib/pkgconfig
	sed -e 's,@PREFIX@,/usr,' -e 's,@LIBDIR@,$${prefix}/lib,' -e 's,@INCLUDEDIR@,$${prefix}/include,' \
		-e 's,@VERSION@,$(EMBER_VERSION),' $(@D)/bindings-c/ember.pc.in > $(1)/usr/lib/pkgconfig/ember.pc
	$(INSTALL) -D -m 0644 $(@D)/cli/share/emberctl.bash $(1)/usr/share/bash-completion/completions/emberctl
	$(INSTALL) -D -m 0644 $(@D)/cli/share/_emberctl $(1)/usr/share/zsh/site-functions/_emberctl
	$(INSTALL) -D -m 0644 $(@D)/cli/share/emberctl.fish $(1)/usr/share/fish/vendor_completions.d/emberctl.fish
	$(INSTALL) -D -m 0644 $(@D)/cli/share/emberctl.1 $(1)/usr/share/man/man1/emberctl.1
endef

define EMBER_INSTALL_STAGING_CMDS
	$(call EMBER_INSTALL_FILES,$(STAGING_DIR))
endef

define EMBER_INSTALL_TARGET_CMDS
	$(call EMBER_INSTALL_FILES,$(TARGET_DIR))
endef

$(eval $(cargo-package))
