SUMMARY = "Ember: inter-process communication for embedded Linux (libember and emberctl)"
DESCRIPTION = "Ember puts the Linux IPC mechanisms (pipes, FIFOs, message queues, Unix \
sockets, shared memory, D-Bus) behind one small allocation-free API with one frame format. \
This recipe builds the C library (libember.a, libember.so, ember.h, ember.pc) and the \
emberctl command with its shell completions and man page."
HOMEPAGE = "https://github.com/ember-ipc/ember"
SECTION = "libs"
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE-MIT;md5=aeb559a10d889ce6d93adb9b1a4ab2f2 \
                    file://LICENSE-APACHE;md5=3b83ef96387f14655fc854ddc3c6bd57"

# The tree this layer ships in. A release pins SRCREV to its tag's commit in a bbappend.
SRC_URI = "git://github.com/ember-ipc/ember.git;protocol=https;branch=main"
SRCREV ?= "${AUTOREV}"

# The crates of Cargo.lock, fetched by bitbake (written by `cargo xtask packaging`).
require ${BPN}-crates.inc

inherit cargo pkgconfig bash-completion

# The C library and the command; the other workspace members are tests and tools.
CARGO_BUILD_FLAGS:append = " -p ember-ipc-c -p ember-ipc-cli"

# The layout of `cargo xtask dist --prefix` (packaging/dist-files.txt), which
# `cargo xtask test` checks these lines against.
do_install() {
    install -d ${D}${bindir} ${D}${includedir} ${D}${libdir}/pkgconfig
    install -d ${D}${datadir}/bash-completion/completions ${D}${datadir}/zsh/site-functions
    install -d ${D}${datadir}/fish/vendor_completions.d ${D}${mandir}/man1
    install -m 0755 ${CARGO_BINDIR}/emberctl ${D}${bindir}/emberctl
    install -m 0644 ${S}/bindings-c/include/ember.h ${D}${includedir}/ember.h
    install -m 0644 ${CARGO_BINDIR}/libember.a ${D}${libdir}/libember.a
    install -m 0755 ${CARGO_BINDIR}/libember.so ${D}${libdir}/libember.so.${PV}
    ln -sf libember.so.${PV} ${D}${libdir}/libember.so.0
    ln -sf libember.so.0 ${D}${libdir}/libember.so
    sed -e 's,@PREFIX@,${prefix},' -e 's,@LIBDIR@,${libdir},' -e 's,@INCLUDEDIR@,${includedir},' \
        -e 's,@VERSION@,${PV},' ${S}/bindings-c/ember.pc.in > ${D}${libdir}/pkgconfig/ember.pc
    install -m 0644 ${S}/cli/share/emberctl.bash ${D}${datadir}/bash-completion/completions/emberctl
    install -m 0644 ${S}/cli/share/_emberctl ${D}${datadir}/zsh/site-functions/_emberctl
    install -m 0644 ${S}/cli/share/emberctl.fish ${D}${datadir}/fish/vendor_completions.d/emberctl.fish
    install -m 0644 ${S}/cli/share/emberctl.1 ${D}${mandir}/man1/emberctl.1
}

# libember.so.0* and emberctl in ${PN}; libember.so, ember.h and ember.pc in ${PN}-dev;
# libember.a in ${PN}-staticdev; the man page in ${PN}-doc; bash's completion in
# ${PN}-bash-completion (the bash-completion class); zsh's and fish's here.
PACKAGES =+ "${PN}-zsh-completion ${PN}-fish-completion"
FILES:${PN}-zsh-completion = "${datadir}/zsh"
FILES:${PN}-fish-completion = "${datadir}/fish"
RDEPENDS:${PN}-zsh-completion = "zsh"
RDEPENDS:${PN}-fish-completion = "fish"
