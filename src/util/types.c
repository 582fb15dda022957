/* Names of transports as stored in the directory and shown to operators. */
#include <strings.h>

#include "sipreg/types.h"

const char *sip_proto_name(enum sip_proto proto)
{
	switch (proto) {
	case SIP_PROTO_UDP:
		return "udp";
	case SIP_PROTO_TCP:
		return "tcp";
	case SIP_PROTO_TLS:
		return "tls";
	default:
		return "none";
	}
}

enum sip_proto sip_proto_from_name(const char *name, size_t len)
{
	static const char *const names[] = { "udp", "tcp", "tls" };

	for (size_t i = 0; i < 3; i++) {
		if (len == 3 && strncasecmp(name, names[i], 3) == 0)
			return (enum sip_proto)(SIP_PROTO_UDP + i);
	}
	return SIP_PROTO_NONE;
}
