/* prototype: fastcc OBJ -- CC ARGS: run the compiler, then the object check */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include "elfcheck.h"
extern char **environ;
int main(int argc, char **argv) {
    pid_t pid; int st;
    if (posix_spawnp(&pid, argv[3], 0, 0, argv + 3, environ)) return 3;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) return 1;
    return object_undecided(argv[1]) ? 100 : 0;
}
