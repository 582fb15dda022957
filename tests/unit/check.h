/* A minimal TAP producer for the C unit tests: meson reads TAP (protocol: 'tap') and
 * .ci/run totals the "ok"/"not ok" lines into its summary. */
#ifndef SIPREG_CHECK_H
#define SIPREG_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_n, check_failed, check_case_failed;

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			printf("#   %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);   \
			check_case_failed = 1;                                             \
		}                                                                          \
	} while (0)

#define CHECK_INT(a, b)                                                                    \
	do {                                                                               \
		long long check_a_ = (long long)(a), check_b_ = (long long)(b);           \
		if (check_a_ != check_b_) {                                                \
			printf("#   %s:%d: %s == %lld, expected %s == %lld\n", __FILE__,       \
			       __LINE__, #a, check_a_, #b, check_b_);                      \
			check_case_failed = 1;                                             \
		}                                                                          \
	} while (0)

#define CHECK_STR(a, b)                                                                    \
	do {                                                                               \
		const char *check_a_ = (a), *check_b_ = (b);                               \
		if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) {           \
			printf("#   %s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__,         \
			       __LINE__, #a, check_a_ ? check_a_ : "(null)",               \
			       check_b_ ? check_b_ : "(null)");                            \
			check_case_failed = 1;                                             \
		}                                                                          \
	} while (0)

/* CHECK_MEM(ptr, len, "literal"): exact bytes. */
#define CHECK_MEM(p, len, lit)                                                             \
	do {                                                                               \
		size_t check_l_ = (len);                                                   \
		if (check_l_ != sizeof(lit) - 1 || memcmp((p), (lit), check_l_) != 0) {    \
			printf("#   %s:%d: %s is \"%.*s\", expected \"%s\"\n", __FILE__,       \
			       __LINE__, #p, (int)check_l_, (const char *)(p), lit);       \
			check_case_failed = 1;                                             \
		}                                                                          \
	} while (0)

#define RUN(fn)                                                                            \
	do {                                                                               \
		check_case_failed = 0;                                                     \
		fn();                                                                      \
		check_n++;                                                                 \
		printf("%s %d - %s\n", check_case_failed ? "not ok" : "ok", check_n, #fn);  \
		check_failed += check_case_failed;                                         \
		fflush(stdout);                                                            \
	} while (0)

/* A case the subject under test does not take part in (an optional operation it lacks):
 * reported as a TAP skip with the reason. */
#define RUN_SKIP(fn, why)                                                                  \
	do {                                                                               \
		check_n++;                                                                 \
		printf("ok %d - %s # SKIP %s\n", check_n, #fn, why);                        \
		fflush(stdout);                                                            \
	} while (0)

#define CHECK_DONE()                                                                       \
	do {                                                                               \
		printf("1..%d\n", check_n);                                                \
		return check_failed ? 1 : 0;                                               \
	} while (0)

#endif
