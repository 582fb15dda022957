/* Unit tests of net_tcp_frame: where one SIP message ends in a TCP byte stream. */
#include <errno.h>

#include "check.h"
#include "net/net.h"

#define MAX 4096

#define REQ_HEAD                                                                               \
	"REGISTER sip:example.com SIP/2.0\r\n"                                                 \
	"Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bK-1\r\n"                                 \
	"Call-ID: a@b\r\n"                                                                     \
	"CSeq: 1 REGISTER\r\n"

static const char msg_a[] = REQ_HEAD "Content-Length: 0\r\n\r\n";
static const char msg_b[] = REQ_HEAD "Content-Length: 5\r\n\r\nhello";

/* Frame buf as one message and return its length, or -errno. */
static long frame_one(const char *buf, size_t len, size_t *skip)
{
	size_t mlen = 0, s = 0;
	int err = net_tcp_frame(buf, len, MAX, &s, &mlen);

	if (skip)
		*skip = s;
	return err ? -err : (long)mlen;
}

#define FRAME(lit) frame_one((lit), sizeof(lit) - 1, NULL)

static void test_frame_pipelined_messages_in_one_buffer(void)
{
	char buf[2 * sizeof(msg_a) + sizeof(msg_b)];
	size_t len = 0, off = 0, skip, mlen;

	memcpy(buf + len, msg_a, sizeof(msg_a) - 1);
	len += sizeof(msg_a) - 1;
	memcpy(buf + len, msg_b, sizeof(msg_b) - 1);
	len += sizeof(msg_b) - 1;
	memcpy(buf + len, msg_a, sizeof(msg_a) - 1);
	len += sizeof(msg_a) - 1;

	CHECK_INT(net_tcp_frame(buf + off, len - off, MAX, &skip, &mlen), 0);
	CHECK_INT(skip, 0);
	CHECK_INT(mlen, sizeof(msg_a) - 1);
	off += skip + mlen;
	CHECK_INT(net_tcp_frame(buf + off, len - off, MAX, &skip, &mlen), 0);
	CHECK_INT(mlen, sizeof(msg_b) - 1);
	CHECK_MEM(buf + off + mlen - 5, 5, "hello");
	off += skip + mlen;
	CHECK_INT(net_tcp_frame(buf + off, len - off, MAX, &skip, &mlen), 0);
	CHECK_INT(mlen, sizeof(msg_a) - 1);
	off += skip + mlen;
	CHECK_INT(off, len);
	CHECK_INT(net_tcp_frame(buf + off, len - off, MAX, &skip, &mlen), EAGAIN);
}

static void test_frame_message_split_at_every_byte(void)
{
	size_t total = sizeof(msg_b) - 1;

	for (size_t k = 0; k < total; k++) {
		size_t skip, mlen;
		int err = net_tcp_frame(msg_b, k, MAX, &skip, &mlen);

		if (err != EAGAIN) {
			printf("#   prefix of %zu bytes gave %d\n", k, err);
			CHECK_INT(err, EAGAIN);
			return;
		}
	}
	CHECK_INT(frame_one(msg_b, total, NULL), (long)total);
}

static void test_frame_two_messages_split_anywhere(void)
{
	/* Whatever the cut, the first message frames exactly when all of it is there and
	 * the second follows it unchanged. */
	char buf[sizeof(msg_b) + sizeof(msg_a)];
	size_t la = sizeof(msg_b) - 1, len = la + sizeof(msg_a) - 1;

	memcpy(buf, msg_b, la);
	memcpy(buf + la, msg_a, sizeof(msg_a) - 1);
	for (size_t k = 1; k <= len; k++) {
		size_t skip, mlen;
		int err = net_tcp_frame(buf, k, MAX, &skip, &mlen);

		CHECK_INT(err, k < la ? EAGAIN : 0);
		if (k >= la)
			CHECK_INT(mlen, la);
		if (check_case_failed)
			return;
	}
}

static void test_frame_crlf_keepalives_are_skipped(void)
{
	char buf[sizeof(msg_a) + 8];
	size_t skip, mlen;

	CHECK_INT(net_tcp_frame("\r\n\r\n", 4, MAX, &skip, &mlen), EAGAIN);
	CHECK_INT(skip, 4);
	CHECK_INT(net_tcp_frame("\r\n", 2, MAX, &skip, &mlen), EAGAIN);
	CHECK_INT(skip, 2);
	/* Half a CRLF is kept until the LF comes. */
	CHECK_INT(net_tcp_frame("\r\n\r", 3, MAX, &skip, &mlen), EAGAIN);
	CHECK_INT(skip, 2);

	memcpy(buf, "\r\n\r\n\r\n", 6);
	memcpy(buf + 6, msg_a, sizeof(msg_a) - 1);
	CHECK_INT(net_tcp_frame(buf, 6 + sizeof(msg_a) - 1, MAX, &skip, &mlen), 0);
	CHECK_INT(skip, 6);
	CHECK_INT(mlen, sizeof(msg_a) - 1);
	CHECK_MEM(buf + skip, 8, "REGISTER");
}

static void test_frame_content_length_forms(void)
{
	CHECK_INT(FRAME(REQ_HEAD "l: 3\r\n\r\nabc"), sizeof(REQ_HEAD "l: 3\r\n\r\nabc") - 1);
	CHECK_INT(FRAME(REQ_HEAD "L:3\r\n\r\nabc"), sizeof(REQ_HEAD "L:3\r\n\r\nabc") - 1);
	CHECK_INT(FRAME(REQ_HEAD "cOnTeNt-LeNgTh \t:\t 3 \r\n\r\nabc"),
		  sizeof(REQ_HEAD "cOnTeNt-LeNgTh \t:\t 3 \r\n\r\nabc") - 1);
	/* Folded value (LWS with CRLF) */
	CHECK_INT(FRAME(REQ_HEAD "Content-Length:\r\n   3\r\n\r\nabc"),
		  sizeof(REQ_HEAD "Content-Length:\r\n   3\r\n\r\nabc") - 1);
	CHECK_INT(FRAME(REQ_HEAD "Content-Length: 003\r\n\r\nabc"),
		  sizeof(REQ_HEAD "Content-Length: 003\r\n\r\nabc") - 1);
	/* Content-Length last, first, and repeated with the same value */
	CHECK_INT(FRAME("OPTIONS sip:a SIP/2.0\r\nContent-Length: 2\r\nVia: x\r\n\r\nhi"),
		  sizeof("OPTIONS sip:a SIP/2.0\r\nContent-Length: 2\r\nVia: x\r\n\r\nhi") - 1);
	CHECK_INT(FRAME(REQ_HEAD "l: 2\r\nContent-Length: 2\r\n\r\nhi"),
		  sizeof(REQ_HEAD "l: 2\r\nContent-Length: 2\r\n\r\nhi") - 1);
	/* A folded line of another header that looks like Content-Length is not one. */
	CHECK_INT(FRAME(REQ_HEAD "Subject: x\r\n l: 9\r\nl: 1\r\n\r\nz"),
		  sizeof(REQ_HEAD "Subject: x\r\n l: 9\r\nl: 1\r\n\r\nz") - 1);
	/* Names that merely contain it do not count. */
	CHECK_INT(
	    FRAME(REQ_HEAD "X-Content-Length: 7\r\nContent-Lengthy: 7\r\nl: 1\r\n\r\nz"),
	    sizeof(REQ_HEAD "X-Content-Length: 7\r\nContent-Lengthy: 7\r\nl: 1\r\n\r\nz") - 1);
	/* A body holding CRLFCRLF does not end the message early. */
	CHECK_INT(FRAME(REQ_HEAD "l: 6\r\n\r\n\r\n\r\nab"),
		  sizeof(REQ_HEAD "l: 6\r\n\r\n\r\n\r\nab") - 1);
}

static void test_frame_bad_content_length_is_ebadmsg(void)
{
	CHECK_INT(FRAME(REQ_HEAD "\r\n"), -EBADMSG);
	CHECK_INT(FRAME(REQ_HEAD "Content-Length: -1\r\n\r\n"), -EBADMSG);
	CHECK_INT(FRAME(REQ_HEAD "Content-Length: abc\r\n\r\n"), -EBADMSG);
	CHECK_INT(FRAME(REQ_HEAD "Content-Length: 5x\r\n\r\nhello"), -EBADMSG);
	CHECK_INT(FRAME(REQ_HEAD "Content-Length: +5\r\n\r\nhello"), -EBADMSG);
	CHECK_INT(FRAME(REQ_HEAD "Content-Length: 1 2\r\n\r\nhello"), -EBADMSG);
	CHECK_INT(FRAME(REQ_HEAD "Content-Length:\r\n\r\n"), -EBADMSG);
	CHECK_INT(FRAME(REQ_HEAD "Content-Length: 2\r\nl: 3\r\n\r\nabc"), -EBADMSG);
	CHECK_INT(FRAME("OPTIONS sip:a SIP/2.0\r\n\r\n"), -EBADMSG);
	/* Judged as soon as the headers are in, before any body arrives. */
	CHECK_INT(FRAME(REQ_HEAD "Content-Length: x1\r\n\r\n"), -EBADMSG);
}

static void test_frame_oversize_is_emsgsize(void)
{
	static char big[MAX + 64];
	size_t skip, mlen;

	/* Headers that never end within max bytes. */
	memset(big, 'a', sizeof(big));
	memcpy(big, REQ_HEAD, sizeof(REQ_HEAD) - 1);
	CHECK_INT(net_tcp_frame(big, MAX, MAX, &skip, &mlen), EMSGSIZE);
	CHECK_INT(net_tcp_frame(big, MAX - 1, MAX, &skip, &mlen), EAGAIN);
	/* A Content-Length that would take the message past max: known before the body. */
	CHECK_INT(FRAME(REQ_HEAD "Content-Length: 4096\r\n\r\n"), -EMSGSIZE);
	CHECK_INT(FRAME(REQ_HEAD "Content-Length: 99999999999999999999999999\r\n\r\n"),
		  -EMSGSIZE);
	/* Exactly max fits. */
	{
		const char head[] = REQ_HEAD "Content-Length: 3896\r\n\r\n";
		size_t hl = sizeof(head) - 1, cl = MAX - hl;
		char clhead[sizeof(head) + 8];
		int n = snprintf(clhead, sizeof(clhead), REQ_HEAD "Content-Length: %zu\r\n\r\n",
				 cl);

		CHECK((size_t)n == hl);
		memcpy(big, clhead, hl);
		memset(big + hl, 'b', cl);
		CHECK_INT(frame_one(big, MAX, NULL), MAX);
		CHECK_INT(net_tcp_frame(big, MAX, MAX - 1, &skip, &mlen), EMSGSIZE);
	}
}

static void test_frame_body_with_nul_bytes(void)
{
	static const char m[] = REQ_HEAD "Content-Length: 5\r\n\r\na\0b\0c" REQ_HEAD;
	size_t skip, mlen;

	CHECK_INT(net_tcp_frame(m, sizeof(m) - 1, MAX, &skip, &mlen), 0);
	CHECK_INT(mlen, sizeof(REQ_HEAD "Content-Length: 5\r\n\r\n") - 1 + 5);
	CHECK_MEM(m + mlen - 5, 5, "a\0b\0c");
	CHECK_MEM(m + mlen, 8, "REGISTER");
}

/* A pseudo-random message (fixed seed): leading CRLFs, a start line, headers drawn from
 * Content-Length spellings and others (the length sometimes wrong or repeated), a body,
 * sometimes noise. */
static size_t random_stream(char *buf, size_t cap, unsigned *seed)
{
	static const char *hdrs[] = {"Content-Length: %u",
				     "l:%u",
				     "cOnTeNt-LeNgTh \t: %u ",
				     "Content-Length:\r\n %u",
				     "L : %u",
				     "X: y",
				     "Via: SIP/2.0/TCP h",
				     "Content-Length: -%u",
				     "l: %ux"};
	size_t len = 0;
	unsigned cl, n;

#define RND() (*seed = *seed * 1103515245u + 12345u, (*seed >> 16) & 0x7fff)
	cl = RND() % 40;
	for (n = RND() % 3; n > 0; n--)
		len += (size_t)snprintf(buf + len, cap - len, "\r\n");
	len += (size_t)snprintf(buf + len, cap - len, "OPTIONS sip:x SIP/2.0\r\n");
	for (n = RND() % 4; n > 0; n--) {
		unsigned v = RND() % 8 == 0 ? cl + 1 : cl;

		len += (size_t)snprintf(buf + len, cap - len, hdrs[RND() % 9], v);
		len += (size_t)snprintf(buf + len, cap - len, "\r\n");
	}
	len += (size_t)snprintf(buf + len, cap - len, "\r\n");
	for (n = RND() % 60; n > 0 && len < cap; n--)
		buf[len++] = (char)(RND() % 4 == 0 ? '\r' : RND() % 256);
#undef RND
	return len;
}

/* The answer always lies within the buffer, a message that frames keeps framing the same
 * way when more bytes follow, and every strict prefix of it asks for more. */
static void test_frame_random_streams_are_consistent(void)
{
	unsigned seed = 12345;
	char buf[1024];
	int bad = 0, framed = 0, refused = 0;

	for (int round = 0; round < 20000 && !bad; round++) {
		size_t len = random_stream(buf, 512, &seed), skip, mlen, skip2, mlen2;
		int err = net_tcp_frame(buf, len, 256, &skip, &mlen), err2;

		framed += err == 0;
		refused += err == EBADMSG;
		if (skip > len || skip % 2 || (err == 0 && (mlen == 0 || skip + mlen > len)))
			bad = 1;
		if (err == 0) {
			memset(buf + len, 'z', sizeof(buf) - len);
			err2 = net_tcp_frame(buf, sizeof(buf), 256, &skip2, &mlen2);
			if (err2 != 0 || skip2 != skip || mlen2 != mlen)
				bad = 1;
			for (size_t k = skip; k < skip + mlen && !bad; k++)
				if (net_tcp_frame(buf, k, 256, &skip2, &mlen2) != EAGAIN)
					bad = 1;
		}
		if (bad)
			printf("#   round %d: err %d skip %zu mlen %zu len %zu\n", round, err,
			       skip, mlen, len);
	}
	printf("#   %d framed, %d refused of 20000\n", framed, refused);
	CHECK_INT(bad, 0);
	/* The generator reaches both outcomes often. */
	CHECK(framed > 2000);
	CHECK(refused > 2000);
}

int main(void)
{
	RUN(test_frame_pipelined_messages_in_one_buffer);
	RUN(test_frame_message_split_at_every_byte);
	RUN(test_frame_two_messages_split_anywhere);
	RUN(test_frame_crlf_keepalives_are_skipped);
	RUN(test_frame_content_length_forms);
	RUN(test_frame_bad_content_length_is_ebadmsg);
	RUN(test_frame_oversize_is_emsgsize);
	RUN(test_frame_body_with_nul_bytes);
	RUN(test_frame_random_streams_are_consistent);
	CHECK_DONE();
}
