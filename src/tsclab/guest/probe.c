/*
 * tsclab-probe: a busy clock reader for a guest under test.
 *
 * One reader process per online CPU, each pinned to its CPU, reads
 * CLOCK_REALTIME, MONOTONIC, BOOTTIME, MONOTONIC_RAW and the TSC in a
 * tight loop (through the vDSO where the clocksource has one, the syscall
 * otherwise) and writes whole lines to stdout, one write() per line so
 * lines from different CPUs never interleave on the tty:
 *
 *   H <version> <ncpus> <interval_ns> <jump_ns>       once, at start
 *   K <cpu> <tsc_per_ms>                              TSC calibration
 *   S <cpu> <seq> <tsc> <rt> <mono> <boot> <raw> <coarse>
 *                                                     every interval of MONOTONIC_RAW
 *                                                     (tsc: read just before the clocks)
 *   J <cpu> <tsc> <rt> <mono> <boot> <raw> <coarse> <tsc> <rt> <mono> <boot> <raw> <coarse>
 *                                                     a step between two consecutive
 *                                                     reads: any clock backwards, or a
 *                                                     clock or the TSC moved more than
 *                                                     jump_ns; before and after values
 *   F <cpu> <tsc_first> <tsc_last> <mono> <reads>     MONOTONIC returned the same value
 *                                                     while the TSC ran on for more than
 *                                                     jump_ns
 *
 * coarse is CLOCK_MONOTONIC_COARSE: the time of the last timekeeping
 * update, so mono - coarse is how long ago the last update was.
 *
 * Clock values are ns (tv_sec * 1e9 + tv_nsec); TSC values are cycles.
 * Everything is integer: the host does the arithmetic.
 *
 * Usage: tsclab-probe [interval_ms [jump_ms]]   (defaults 10 and 20)
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROBE_VERSION 3

struct sample {
	uint64_t tsc;
	int64_t rt, mono, boot, raw, coarse;
};

static inline uint64_t rdtsc_ordered(void)
{
	uint32_t lo, hi;

	/* lfence keeps the TSC read from moving across the clock reads. */
	__asm__ __volatile__("lfence; rdtsc" : "=a"(lo), "=d"(hi)::"memory");
	return ((uint64_t)hi << 32) | lo;
}

static int64_t read_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * One sample of every clock, bracketed by two TSC reads.  A sample the
 * pause (or a preemption) fell inside would mix clocks read before and
 * after it; one whose reads spread over more than torn_cycles (1 ms) is
 * dropped and taken again, so a pause always falls between two samples,
 * every step is seen whole, and every clock in a sample was read within
 * 1 ms of its TSC value.
 */
static void take(struct sample *s, uint64_t torn_cycles)
{
	for (;;) {
		uint64_t first = rdtsc_ordered();

		s->coarse = read_ns(CLOCK_MONOTONIC_COARSE);
		s->rt = read_ns(CLOCK_REALTIME);
		s->mono = read_ns(CLOCK_MONOTONIC);
		s->boot = read_ns(CLOCK_BOOTTIME);
		s->raw = read_ns(CLOCK_MONOTONIC_RAW);
		if (rdtsc_ordered() - first <= torn_cycles) {
			s->tsc = first;
			return;
		}
	}
}

static void emit(const char *line, int len)
{
	/* One write per line; a short write on a tty is not retried. */
	if (write(STDOUT_FILENO, line, (size_t)len) < 0)
		_exit(3);
}

/* TSC cycles per ms, measured over 100 ms of MONOTONIC_RAW. */
static uint64_t calibrate(void)
{
	struct sample a, b;

	take(&a, UINT64_MAX);
	do {
		take(&b, UINT64_MAX);
	} while (b.raw - a.raw < 100000000LL);
	return (b.tsc - a.tsc) * 1000000ULL / (uint64_t)(b.raw - a.raw);
}

static int stepped(const struct sample *a, const struct sample *b, int64_t jump_ns, uint64_t jump_cycles)
{
	int64_t d[4] = { b->rt - a->rt, b->mono - a->mono, b->boot - a->boot, b->raw - a->raw };

	for (int i = 0; i < 4; i++)
		if (d[i] < 0 || d[i] > jump_ns)
			return 1;
	return b->tsc - a->tsc > jump_cycles;
}

static void reader(int cpu, int64_t interval_ns, int64_t jump_ns)
{
	char line[512];
	struct sample prev, cur;
	uint64_t tsc_per_ms, jump_cycles, torn_cycles, frozen_first = 0, frozen_reads = 0;
	int64_t next_emit;
	unsigned long seq = 0;
	cpu_set_t set;
	int len;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0) {
		len = snprintf(line, sizeof(line), "X %d affinity\n", cpu);
		emit(line, len);
	}
	tsc_per_ms = calibrate();
	jump_cycles = tsc_per_ms * (uint64_t)(jump_ns / 1000000);
	torn_cycles = tsc_per_ms;
	len = snprintf(line, sizeof(line), "K %d %llu\n", cpu, (unsigned long long)tsc_per_ms);
	emit(line, len);

	take(&prev, torn_cycles);
	next_emit = prev.raw;
	for (;;) {
		take(&cur, torn_cycles);
		if (stepped(&prev, &cur, jump_ns, jump_cycles)) {
			len = snprintf(line, sizeof(line),
				       "J %d %llu %lld %lld %lld %lld %lld %llu %lld %lld %lld %lld %lld\n", cpu,
				       (unsigned long long)prev.tsc, (long long)prev.rt, (long long)prev.mono,
				       (long long)prev.boot, (long long)prev.raw, (long long)prev.coarse,
				       (unsigned long long)cur.tsc, (long long)cur.rt, (long long)cur.mono,
				       (long long)cur.boot, (long long)cur.raw, (long long)cur.coarse);
			emit(line, len);
		}
		if (cur.mono == prev.mono) {
			if (!frozen_reads)
				frozen_first = prev.tsc;
			frozen_reads++;
		} else if (frozen_reads) {
			if (prev.tsc - frozen_first > jump_cycles) {
				len = snprintf(line, sizeof(line), "F %d %llu %llu %lld %llu\n", cpu,
					       (unsigned long long)frozen_first, (unsigned long long)prev.tsc,
					       (long long)prev.mono, (unsigned long long)frozen_reads);
				emit(line, len);
			}
			frozen_reads = 0;
		}
		if (cur.raw >= next_emit) {
			len = snprintf(line, sizeof(line), "S %d %lu %llu %lld %lld %lld %lld %lld\n", cpu,
				       seq++, (unsigned long long)cur.tsc, (long long)cur.rt, (long long)cur.mono,
				       (long long)cur.boot, (long long)cur.raw, (long long)cur.coarse);
			emit(line, len);
			next_emit = cur.raw + interval_ns;
		}
		/* No re-read after an emit: the pause may well fall inside one. */
		prev = cur;
	}
}

int main(int argc, char **argv)
{
	long interval_ms = argc > 1 ? strtol(argv[1], NULL, 10) : 10;
	long jump_ms = argc > 2 ? strtol(argv[2], NULL, 10) : 20;
	long ncpus = sysconf(_SC_NPROCESSORS_ONLN);
	char line[128];
	int len;

	if (interval_ms <= 0 || jump_ms <= 0 || ncpus <= 0) {
		fprintf(stderr, "usage: tsclab-probe [interval_ms [jump_ms]]\n");
		return 2;
	}
	len = snprintf(line, sizeof(line), "H %d %ld %lld %lld\n", PROBE_VERSION, ncpus,
		       (long long)interval_ms * 1000000LL, (long long)jump_ms * 1000000LL);
	emit(line, len);
	for (int cpu = 0; cpu < ncpus; cpu++) {
		if (fork() == 0) {
			reader(cpu, interval_ms * 1000000LL, jump_ms * 1000000LL);
			_exit(0);
		}
	}
	while (wait(NULL) > 0)
		;
	return 0;
}
