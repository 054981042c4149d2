/* spawn_rss: run a command and report its own wall time and peak RSS.
 * Python cannot start a child without its own (large) address space showing
 * up in the child's ru_maxrss, so the benchmarks start children through this
 * small launcher. Usage: spawn_rss CMD ARGS…; the last line on stderr is
 * "spawn_rss wall_ns=N maxrss_kib=M"; the exit status is the child's. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: spawn_rss CMD [ARGS...]\n"); return 2; }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 2; }
    if (pid == 0) { execvp(argv[1], argv + 1); perror("exec"); _exit(127); }
    int status; struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) { perror("wait4"); return 2; }
    clock_gettime(CLOCK_MONOTONIC, &b);
    long long ns = (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
    fprintf(stderr, "\nspawn_rss wall_ns=%lld maxrss_kib=%ld\n", ns, ru.ru_maxrss);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
