/* Both prototypes: `PROG OBJ -- CC ARGS...` runs the compiler first. */
#include <spawn.h>
#include <sys/wait.h>
extern char **environ;

/* 0 when the compiler succeeded; 3 when it could not start; 1 otherwise */
static int compile(char **argv) {
    pid_t pid;
    int st;
    if (posix_spawnp(&pid, argv[3], 0, 0, argv + 3, environ)) return 3;
    if (waitpid(pid, &st, 0) < 0) return 1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
