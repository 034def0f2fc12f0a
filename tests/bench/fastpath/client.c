#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdlib.h>
extern char **environ;
int main(int argc, char **argv) {
    pid_t pid; int st;
    if (posix_spawnp(&pid, argv[3], 0, 0, argv + 3, environ)) return 3;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) return 1;
    char path[4096]; if (!realpath(argv[1], path)) return 100;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX}; const char *sp = getenv("FASTPATH_SOCK"); if (!sp || strlen(sp) >= sizeof a.sun_path) return 100; strcpy(a.sun_path, sp);
    if (connect(fd, (void *)&a, sizeof a)) return 100;
    write(fd, path, strlen(path));
    char r = '1'; read(fd, &r, 1);
    return r == '0' ? 0 : 100;
}
