/* The oracle's whole userspace: a static init that mounts devtmpfs, loads
 * every module in /modules (finit_module) and prints where the kernel put
 * each one's sections (/sys/module/NAME/sections/), says it reached
 * userspace on the console and waits (the host then reads guest memory).
 * Built with gcc -static by tests/bench/kernel_oracle.py. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int out = -1;

static void say(const char *s)
{
	if (out >= 0)
		write(out, s, strlen(s));
}

static void sections(const char *mod)
{
	char path[1024], line[1200], addr[64];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "/sys/module/%s/sections", mod);
	d = opendir(path);
	if (!d) {
		snprintf(line, sizeof(line), "pvpass-oracle: no %s\n", path);
		say(line);
		return;
	}
	while ((e = readdir(d))) {
		int fd, n;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "/sys/module/%s/sections/%s", mod, e->d_name);
		fd = open(path, O_RDONLY);
		n = fd >= 0 ? read(fd, addr, sizeof(addr) - 1) : -1;
		if (fd >= 0)
			close(fd);
		addr[n > 0 ? n : 0] = 0;
		addr[strcspn(addr, "\n")] = 0;
		snprintf(line, sizeof(line), "pvpass-oracle: section %s %s %s\n", mod, e->d_name, addr);
		say(line);
	}
	closedir(d);
}

static void modules(void)
{
	char path[1024], name[256], line[1200];
	struct dirent *e;
	DIR *d = opendir("/modules");

	if (!d)
		return;
	mkdir("/sys", 0755);
	mount("sysfs", "/sys", "sysfs", 0, 0);
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		int fd, r;

		if (n < 4 || strcmp(e->d_name + n - 3, ".ko"))
			continue;
		snprintf(path, sizeof(path), "/modules/%s", e->d_name);
		snprintf(name, sizeof(name), "%.*s", (int)(n - 3), e->d_name);
		for (char *p = name; *p; p++)
			if (*p == '-')
				*p = '_';
		fd = open(path, O_RDONLY);
		r = fd >= 0 ? syscall(SYS_finit_module, fd, "", 0) : -1;
		snprintf(line, sizeof(line), "pvpass-oracle: insmod %s: %s\n", name,
			 r == 0 ? "ok" : strerror(errno));
		say(line);
		if (fd >= 0)
			close(fd);
		if (r == 0)
			sections(name);
	}
	closedir(d);
}

int main(void)
{
	mkdir("/dev", 0755);
	mount("devtmpfs", "/dev", "devtmpfs", 0, 0);
	out = open("/dev/console", O_WRONLY);
	if (out < 0)
		out = open("/dev/ttyS0", O_WRONLY);
	modules();
	say("pvpass-oracle: userspace reached\n");
	for (;;)
		pause();
}
