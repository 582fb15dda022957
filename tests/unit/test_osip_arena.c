/* Unit tests for the arena libosip2 parses into: whole parses, the newest block taken back,
 * realloc, spilling to malloc, heap pointers outside any arena, slot reuse. Leaks and bad
 * frees are the sanitizer build's to find. */
#include <osipparser2/osip_port.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sip/osip_arena.h"
#include "sip/msg.h"

#define CRLF "\r\n"
#define REGISTER_HEAD                                                                          \
	"REGISTER sip:example.com SIP/2.0" CRLF                                                \
	"Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK776asdhds;rport" CRLF                   \
	"Max-Forwards: 70" CRLF "To: <sip:bob@example.com>" CRLF                               \
	"From: <sip:bob@example.com>;tag=456248" CRLF                                          \
	"Call-ID: 843817637684230@998sdasdh09" CRLF "CSeq: 2 REGISTER" CRLF                    \
	"Expires: 3600" CRLF "User-Agent: test" CRLF

static int parse(const char *s, struct sipmsg **mp)
{
	const char *reason = NULL;
	int st = 0;

	return sipmsg_parse(mp, s, strlen(s), &st, &reason);
}

static void test_arena_holds_a_whole_register_with_credentials(void)
{
	struct sipmsg *m = NULL;

	CHECK_INT(parse(REGISTER_HEAD "Contact: <sip:bob@192.0.2.4:5062>" CRLF
				      "Authorization: Digest username=\"bob\", "
				      "realm=\"example.com\", nonce=\"abcdef0123456789\", "
				      "uri=\"sip:example.com\", response=\"0123456789abcdef"
				      "0123456789abcdef\", algorithm=MD5, qop=auth, "
				      "nc=00000001, cnonce=\"xyz\"" CRLF
				      "Content-Length: 0" CRLF CRLF,
			&m),
		  0);
	CHECK(m && m->arena);
	CHECK(m && osip_arena_whole(m->arena));
	if (m)
		printf("# arena bytes for a REGISTER with credentials: %zu\n",
		       osip_arena_used(m->arena));
	sipmsg_free(&m);
	CHECK(m == NULL);
}

static void test_arena_message_too_big_spills_and_frees_cleanly(void)
{
	size_t cap = 64 * 1024, len;
	char *buf = malloc(cap);
	struct sipmsg *m = NULL;

	CHECK(buf != NULL);
	if (!buf)
		return;
	len = (size_t)snprintf(buf, cap, "%s", REGISTER_HEAD);
	for (int i = 0; i < 400 && len < cap - 200; i++)
		len += (size_t)snprintf(
		    buf + len, cap - len,
		    "Contact: <sip:bob@192.0.2.4:%d;transport=udp>;q=0.5" CRLF, 5000 + i);
	len += (size_t)snprintf(buf + len, cap - len, "Content-Length: 0" CRLF CRLF);
	CHECK_INT(parse(buf, &m), 0);
	CHECK(m && m->arena && !osip_arena_whole(m->arena));
	CHECK(m && m->n_contacts == 400);
	sipmsg_free(&m); /* frees the spilled objects one by one: the sanitizers watch */
	free(buf);
}

static void test_arena_takes_back_its_newest_block(void)
{
	struct osip_arena *a = osip_arena_get();
	size_t before;
	char *p, *q;

	CHECK(a != NULL);
	if (!a)
		return;
	osip_arena_enter(a);
	before = osip_arena_used(a);
	p = osip_malloc(100);
	q = osip_malloc(10);
	CHECK(osip_arena_used(a) > before);
	osip_free(p); /* not the newest: stays until the release */
	osip_free(q);
	CHECK(osip_arena_used(a) > before);
	q = osip_malloc(10);
	osip_free(q);
	p = osip_malloc(1);
	CHECK(p != NULL && ((uintptr_t)p & 15) == 0);
	osip_free(p);
	osip_arena_leave();
	CHECK(osip_arena_whole(a));
	osip_arena_put(&a);
	CHECK(a == NULL);
}

static void test_arena_realloc_keeps_the_bytes(void)
{
	struct osip_arena *a = osip_arena_get();
	char *p;

	CHECK(a != NULL);
	if (!a)
		return;
	osip_arena_enter(a);
	p = osip_malloc(6);
	memcpy(p, "hello", 6);
	p = osip_realloc(p, 4000);
	CHECK(p != NULL);
	if (p)
		CHECK_STR(p, "hello");
	p = osip_realloc(p, 3);
	CHECK(p && memcmp(p, "hel", 3) == 0);
	osip_arena_leave();
	CHECK(osip_arena_whole(a));
	osip_arena_put(&a);
}

static void test_arena_full_spills_to_the_heap(void)
{
	struct osip_arena *a = osip_arena_get();
	char *big, *p;

	CHECK(a != NULL);
	if (!a)
		return;
	osip_arena_enter(a);
	big = osip_malloc(1024 * 1024);
	CHECK(big != NULL);
	CHECK(!osip_arena_whole(a));
	p = osip_realloc(big, 2 * 1024 * 1024);
	CHECK(p != NULL);
	osip_arena_leave();
	osip_free(p); /* a heap pointer: really freed (LeakSanitizer would say) */
	osip_arena_put(&a);
}

static void test_heap_pointers_outside_an_arena_are_plain_malloc(void)
{
	char *p = osip_malloc(32), *q;

	CHECK(p != NULL);
	memset(p, 'x', 32);
	q = osip_realloc(p, 64);
	CHECK(q && q[31] == 'x');
	osip_free(q);
}

static void test_arena_slots_are_reused_last_in_first_out(void)
{
	struct osip_arena *a = osip_arena_get(), *b = osip_arena_get(), *c;
	void *pa = a;

	CHECK(a && b && a != b);
	osip_arena_put(&b);
	osip_arena_put(&a);
	c = osip_arena_get();
	CHECK(c == pa);
	osip_arena_put(&c);
}

int main(void)
{
	struct sipmsg *m = NULL;

	/* the first parse installs the hooks */
	parse(REGISTER_HEAD "Content-Length: 0" CRLF CRLF, &m);
	sipmsg_free(&m);
	RUN(test_arena_holds_a_whole_register_with_credentials);
	RUN(test_arena_message_too_big_spills_and_frees_cleanly);
	RUN(test_arena_takes_back_its_newest_block);
	RUN(test_arena_realloc_keeps_the_bytes);
	RUN(test_arena_full_spills_to_the_heap);
	RUN(test_heap_pointers_outside_an_arena_are_plain_malloc);
	RUN(test_arena_slots_are_reused_last_in_first_out);
	CHECK_DONE();
}
