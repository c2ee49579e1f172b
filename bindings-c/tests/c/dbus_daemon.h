/* A private dbus-daemon for the C tests that need a bus: `start_daemon(tag)` writes a
 * configuration of our own under /tmp/ember-c-<tag>-<pid>, starts the daemon and puts
 * its address in `address`; `stop_daemon()` stops it and removes the directory. */
#ifndef EMBER_TEST_DBUS_DAEMON_H
#define EMBER_TEST_DBUS_DAEMON_H

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[128];
static char address[256];
static pid_t daemon_pid = -1;

/* Starts dbus-daemon with a configuration of our own; its address goes to `address`. */
static int start_daemon(const char *tag) {
    snprintf(dir, sizeof dir, "/tmp/ember-c-%s-%d", tag, (int)getpid());
    mkdir(dir, 0700);
    char conf[192];
    snprintf(conf, sizeof conf, "%s/bus.conf", dir);
    FILE *f = fopen(conf, "w");
    if (!f) return -1;
    fprintf(f,
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
            " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
            "<busconfig><type>session</type><listen>unix:path=%s/bus</listen><auth>EXTERNAL</auth>\n"
            "<policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/>"
            "<allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>\n",
            dir);
    fclose(f);
    int p[2];
    if (pipe(p) != 0) return -1;
    daemon_pid = fork();
    if (daemon_pid == 0) {
        char cf[224], pa[32];
        snprintf(cf, sizeof cf, "--config-file=%s", conf);
        snprintf(pa, sizeof pa, "--print-address=%d", p[1]);
        close(p[0]);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 2);
        execlp("dbus-daemon", "dbus-daemon", "--nofork", pa, cf, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    size_t got = 0;
    struct pollfd pfd = {.fd = p[0], .events = POLLIN};
    while (got < sizeof address - 1 && poll(&pfd, 1, 10000) == 1) {
        ssize_t n = read(p[0], address + got, sizeof address - 1 - got);
        if (n <= 0) break;
        got += (size_t)n;
        if (memchr(address, '\n', got)) break;
    }
    close(p[0]);
    address[got] = 0;
    char *nl = strchr(address, '\n');
    if (nl) *nl = 0;
    if (strncmp(address, "unix:", 5) != 0) {
        fprintf(stderr, "dbus-daemon did not start (is it installed? cargo xtask test installs it)\n");
        return -1;
    }
    return 0;
}

static void stop_daemon(void) {
    if (daemon_pid > 0) {
        kill(daemon_pid, SIGTERM);
        waitpid(daemon_pid, NULL, 0);
    }
    char p[192];
    snprintf(p, sizeof p, "%s/bus.conf", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/bus", dir);
    unlink(p);
    rmdir(dir);
}

#endif
