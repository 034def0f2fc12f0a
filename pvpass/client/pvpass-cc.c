/* `pvpass cc` without a Python start (docs/build-path.md, "The fast path").

   Run by the `pvpass` shell script as `pvpass-cc PVPASS-PY cc ARGS...`.
   It decides nothing itself: it asks the resident server
   (pvpass/ccserver.py) over a Unix socket for the command to run (the
   driver's own rewrite, writing a temporary named after this process),
   runs the compiler as the build's child (stdin, stdout, stderr, the
   jobserver's fds and signals are the build's), then asks for the verdict
   on the object, which the server renames into place. Whatever the server
   does not decide, or a server that is not there or does not answer, is
   handed to the Python path by exec'ing PVPASS-PY with the same arguments
   (same pid), with PVPASS_CC_COMPILED=TMP once the compiler has run, so
   no compile runs twice, or PVPASS_CC_START=SOCKET where no server listens.
   Linked statically where the C library allows (pvpass/fastpath.py): it
   runs once per compile, and the dynamic loader was a tenth of its cost. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROTO "pvpass-cc 1"
#define MAXMSG (1 << 24)
extern char **environ;

static char **pyargv;                 /* PVPASS-PY cc ARGS... */
static sigset_t orig_mask;
static volatile pid_t child;
static char tmpname[8192];
static volatile sig_atomic_t have_tmp;
static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGXCPU};

/* The Python path, with VAR=VALUE set: never returns. */
static _Noreturn void handover(const char *var, const char *value) {
    if (var) setenv(var, value, 1);
    sigprocmask(SIG_SETMASK, &orig_mask, 0);
    execv(pyargv[0], pyargv);
    fprintf(stderr, "pvpass: error: required tool '%s' not found (%s)\n", pyargv[0], strerror(errno));
    if (have_tmp) unlink(tmpname);
    _exit(3);
}

/* As the Python path's guard(): the compiler gets the signal first, the
   temporary goes, and this process dies of the signal. */
static void on_signal(int sig) {
    if (child > 0) {
        kill(child, sig);
        waitpid(child, 0, 0);
    }
    if (have_tmp) unlink(tmpname);
    signal(sig, SIG_DFL);
    raise(sig);                       /* delivered when the handler returns */
}

struct buf { char *p; size_t n, cap; };

static void put(struct buf *b, const char *s) {
    size_t l = strlen(s) + 1;
    if (b->n + l > b->cap) {
        b->cap = (b->n + l) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) handover(0, 0);
    }
    memcpy(b->p + b->n, s, l);
    b->n += l;
}

static void putnum(struct buf *b, long v) {
    char s[32];
    snprintf(s, sizeof s, "%ld", v);
    put(b, s);
}

static int send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) { if (w < 0 && errno == EINTR) continue; return -1; }
        p += w; n -= w;
    }
    return 0;
}

static int send_msg(int fd, const struct buf *b) {
    uint32_t len = b->n;
    return send_all(fd, (const char *)&len, 4) || send_all(fd, b->p, b->n);
}

static int recv_all(int fd, char *p, size_t n) {
    while (n) {
        ssize_t r = recv(fd, p, n, 0);
        if (r <= 0) { if (r < 0 && errno == EINTR) continue; return -1; }
        p += r; n -= r;
    }
    return 0;
}

/* A reply: its NUL-terminated fields in f[0..*nf). */
static int recv_msg(int fd, char **f, int maxf, int *nf, char **mem) {
    uint32_t len;
    if (recv_all(fd, (char *)&len, 4) || len == 0 || len > MAXMSG) return -1;
    char *p = malloc(len + 1);
    if (!p || recv_all(fd, p, len)) return -1;
    p[len] = 0;
    *mem = p;
    *nf = 0;
    for (size_t i = 0; i < len; i += strlen(p + i) + 1) {
        if (*nf == maxf) return -1;
        f[(*nf)++] = p + i;
    }
    return 0;
}

static void set_timeout(int fd, long ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* Tests: PVPASS_TEST_FAST_PAUSE=PHASE:FILE creates FILE at PHASE and waits
   (up to 60 s) until it is removed. */
static void pause_at(const char *phase) {
    const char *spec = getenv("PVPASS_TEST_FAST_PAUSE");
    size_t l = strlen(phase);
    if (!spec || strncmp(spec, phase, l) || spec[l] != ':') return;
    close(open(spec + l + 1, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    for (int i = 0; i < 6000 && access(spec + l + 1, F_OK) == 0; i++) usleep(10000);
}

/* The socket: in $XDG_RUNTIME_DIR or /tmp/pvpass-UID (a 0700 directory of
   this user's), named by a hash of the Python entry point's path and stat,
   which an install rewrites: an upgrade never talks to an old server. */
static int socket_path(char *out, size_t cap, char *key, size_t keycap) {
    char real[4096];
    struct stat st;
    if (!realpath(pyargv[0], real) || stat(real, &st)) return -1;
    char id[8192];
    int n = snprintf(id, sizeof id, "%s:%lu:%lu:%lld:%ld:%s", real, (unsigned long)st.st_dev,
                     (unsigned long)st.st_ino, (long long)st.st_size, (long)st.st_mtim.tv_nsec, PROTO);
    uint64_t h = 1469598103934665603ULL;                  /* FNV-1a */
    for (int i = 0; i < n; i++) { h ^= (unsigned char)id[i]; h *= 1099511628211ULL; }
    h ^= (uint64_t)st.st_mtim.tv_sec * 1099511628211ULL;
    snprintf(key, keycap, "pvpass-%016llx", (unsigned long long)h);
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (xdg && xdg[0] == '/' && (size_t)snprintf(out, cap, "%s/%s.sock", xdg, key) < cap) return 0;
    /* no runtime directory, or one too deep for a socket's name */
    if ((size_t)snprintf(out, cap, "/tmp/pvpass-%u/%s.sock", (unsigned)getuid(), key) >= cap) return -1;
    return 0;
}

/* The variables the server reads: pvpass's own, the PATH (the compiler),
   and where the result cache is (its hits are served too). */
static int sent(const char *e) {
    return !strncmp(e, "PVPASS_", 7) || !strncmp(e, "PATH=", 5) || !strncmp(e, "HOME=", 5) ||
           !strncmp(e, "XDG_CACHE_HOME=", 15);
}

static int dir_is_ours(const char *sock) {
    char d[4096];
    snprintf(d, sizeof d, "%s", sock);
    char *slash = strrchr(d, '/');
    if (!slash) return 0;
    *slash = 0;
    struct stat st;
    return !lstat(d, &st) && S_ISDIR(st.st_mode) && st.st_uid == getuid() && !(st.st_mode & 077);
}

static int client(int argc, char **argv) {
    if (argc < 3 || strcmp(argv[2], "cc")) {
        fprintf(stderr, "usage: pvpass-cc PVPASS-PY cc -- COMPILER ARGS...\n");
        return 2;
    }
    pyargv = argv + 1;
    sigprocmask(SIG_SETMASK, 0, &orig_mask);
    const char *off = getenv("PVPASS_SERVER");
    if (off && !strcmp(off, "0")) handover(0, 0);
    const char *t = getenv("PVPASS_SERVER_TIMEOUT");            /* ms */
    long timeout = t && atol(t) > 0 ? atol(t) : 2000;

    char sock[sizeof ((struct sockaddr_un *)0)->sun_path], key[64];
    if (socket_path(sock, sizeof sock, key, sizeof key)) handover(0, 0);
    if (!dir_is_ours(sock)) handover("PVPASS_CC_START", sock);
    struct stat st;
    if (lstat(sock, &st) || !S_ISSOCK(st.st_mode) || st.st_uid != getuid())
        handover("PVPASS_CC_START", sock);          /* none, or a stale file the server replaces */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, sock);
    set_timeout(fd, timeout);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        if (errno == ECONNREFUSED || errno == ENOENT) handover("PVPASS_CC_START", sock);
        handover(0, 0);
    }

    /* From here until the compiler runs, signals wait: the server may have
       made our temporary, and a signal must remove it. */
    sigset_t block;
    sigemptyset(&block);
    for (unsigned i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction old, sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
        sigaddset(&block, sigs[i]);
        sigaction(sigs[i], 0, &old);
        if (old.sa_handler != SIG_IGN) sigaction(sigs[i], &sa, 0);   /* nohup stays nohup */
    }
    sigprocmask(SIG_BLOCK, &block, 0);

    struct buf b = {0};
    char cwd[8192];
    if (!getcwd(cwd, sizeof cwd)) handover(0, 0);
    mode_t mask = umask(0);
    umask(mask);
    put(&b, PROTO); put(&b, key); putnum(&b, getpid()); putnum(&b, mask); put(&b, cwd);
    int nenv = 0;
    for (char **e = environ; *e; e++) nenv += sent(*e);
    putnum(&b, nenv);
    for (char **e = environ; *e; e++)
        if (sent(*e)) put(&b, *e);
    putnum(&b, argc - 3);
    for (int i = 3; i < argc; i++) put(&b, argv[i]);
    char *f[65536], *mem;
    int nf;
    if (send_msg(fd, &b) || recv_msg(fd, f, 65535, &nf, &mem) || nf < 1) handover(0, 0);
    if (!strcmp(f[0], "EXEC") && nf >= 2) {      /* nothing for the pass: become the compiler */
        f[nf] = 0;
        sigprocmask(SIG_SETMASK, &orig_mask, 0);
        execvp(f[1], f + 1);
        handover(0, 0);                           /* the Python path says what is missing */
    }
    if (strcmp(f[0], "RUN") || nf < 3) handover(0, 0);
    if (f[1][0]) {
        if (strlen(f[1]) >= sizeof tmpname) handover(0, 0);
        strcpy(tmpname, f[1]);
        have_tmp = 1;
    }
    f[nf] = 0;
    sigprocmask(SIG_SETMASK, &orig_mask, 0);      /* a signal now removes the temporary */
    pause_at("planned");

    posix_spawnattr_t attr;
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    sigprocmask(SIG_BLOCK, &block, 0);            /* until the child is known to the handler */
    pid_t pid;
    int err = posix_spawnp(&pid, f[2], 0, &attr, f + 2, environ);
    if (err) {
        if (have_tmp) unlink(tmpname);
        have_tmp = 0;
        errno = err;
        handover(0, 0);                           /* the Python path says what is missing */
    }
    child = pid;
    sigprocmask(SIG_SETMASK, &orig_mask, 0);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    child = 0;
    int rc = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    if (!have_tmp) return rc & 255;               /* -o /dev/null: the compiler wrote it */
    pause_at("compiled");

    b.n = 0;
    put(&b, "VERDICT"); putnum(&b, rc);
    set_timeout(fd, timeout * 4);
    free(mem);
    if (!send_msg(fd, &b) && !recv_msg(fd, f, 16, &nf, &mem) && nf >= 1) {
        if (!strcmp(f[0], "DONE") && nf >= 3) {
            fputs(f[2], stderr);
            return atoi(f[1]) & 255;
        }
        if (!strcmp(f[0], "PY") && rc == 0) handover("PVPASS_CC_COMPILED", tmpname);
    }
    if (rc != 0) {                                /* as gcc fails: nothing to finish */
        unlink(tmpname);
        return rc & 255;
    }
    /* No answer: move the object out of the server's reach before the Python
       path takes it (a late server then finds nothing to rename). */
    char moved[sizeof tmpname];
    size_t l = strlen(tmpname);
    if (l < 13) handover("PVPASS_CC_COMPILED", tmpname);
    snprintf(moved, sizeof moved, "%.*s%08lx.tmp", (int)(l - 12), tmpname,
             (unsigned long)(time(0) ^ (getpid() << 8)) & 0xffffffffUL);
    if (rename(tmpname, moved)) {
        if (errno == ENOENT) return 0;            /* the server renamed it into place */
        handover("PVPASS_CC_COMPILED", tmpname);
    }
    strcpy(tmpname, moved);
    handover("PVPASS_CC_COMPILED", tmpname);
}

#ifdef PVPASS_LAUNCHER
/* Built as `pvpass` itself at install time (setup.py), in place of the
   shell script pvpass/client/pvpass, and doing its job: `pvpass cc` goes
   straight into the client above, anything else to the Python entry point
   `pvpass-py` beside this file (/proc/self/exe: a symlink to the install
   still finds it), or `python3 -m pvpass` when there is none. One exec
   fewer per compile than the script and dash (~0.6 ms of CPU). */
/* This file's path as the shell script's $0 would be, where /proc is not
   mounted (a build chroot): argv[0] with a slash, else found on the PATH. */
static ssize_t self_from_argv0(const char *arg0, char *out, size_t cap) {
    if (strchr(arg0, '/'))
        return (size_t)snprintf(out, cap, "%s", arg0) < cap ? (ssize_t)strlen(out) : -1;
    const char *path = getenv("PATH");
    for (const char *p = path ? path : ""; *p; p += *p == ':') {
        size_t l = strcspn(p, ":");
        if ((size_t)snprintf(out, cap, "%.*s/%s", (int)l, l ? p : ".", arg0) < cap && !access(out, X_OK))
            return strlen(out);
        p += l;
    }
    return -1;
}

int main(int argc, char **argv) {
    static char py[4096];
    const size_t cap = sizeof py - sizeof "pvpass-py";
    ssize_t n = readlink("/proc/self/exe", py, cap);
    if (n <= 0 || (size_t)n >= cap) n = self_from_argv0(argv[0], py, cap);
    char *slash = n > 0 ? memrchr(py, '/', n) : 0;
    char **a = calloc(argc + 4, sizeof *a);
    if (!a) return 3;
    if (slash) strcpy(slash + 1, "pvpass-py");
    if (!slash || access(py, X_OK)) {
        a[0] = "python3"; a[1] = "-m"; a[2] = "pvpass";
        memcpy(a + 3, argv + 1, argc * sizeof *a);   /* argv[argc] is NULL */
        execvp(a[0], a);
        fprintf(stderr, "pvpass: error: required tool 'python3' not found (%s)\n", strerror(errno));
        return 3;
    }
    a[0] = argv[0]; a[1] = py;
    memcpy(a + 2, argv + 1, argc * sizeof *a);
    if (argc >= 2 && !strcmp(argv[1], "cc")) return client(argc + 1, a);   /* PVPASS_SERVER=0 too */
    execv(py, a + 1);
    fprintf(stderr, "pvpass: error: required tool '%s' not found (%s)\n", py, strerror(errno));
    return 3;
}
#else
int main(int argc, char **argv) { return client(argc, argv); }
#endif
