/* The oracle's whole userspace: a static init that mounts devtmpfs, says it
 * reached userspace on the console and waits (the host then reads guest
 * memory). Built with gcc -static by tests/bench/kernel_oracle.py. */
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void)
{
	static const char msg[] = "pvpass-oracle: userspace reached\n";
	int fd;

	mkdir("/dev", 0755);
	mount("devtmpfs", "/dev", "devtmpfs", 0, 0);
	fd = open("/dev/console", O_WRONLY);
	if (fd < 0)
		fd = open("/dev/ttyS0", O_WRONLY);
	if (fd >= 0)
		write(fd, msg, strlen(msg));
	for (;;)
		pause();
}
