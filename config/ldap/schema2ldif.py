#!/usr/bin/env python3
"""Turn an OpenLDAP .schema file into its cn=config LDIF (olcSchemaConfig), so the two forms
shipped in config/ldap/ carry the same definitions: schema2ldif.py NAME.schema > NAME.ldif"""
import os
import re
import sys


def convert(path):
    name = os.path.splitext(os.path.basename(path))[0]
    text = open(path, encoding="utf-8").read()
    defs, cur = [], None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.match(r"(attributetype|objectclass)\s+(.*)", line, re.I)
        if m:
            cur = [m.group(1).lower(), m.group(2).strip()]
            defs.append(cur)
        elif cur is not None:
            cur[1] += " " + line.strip()
    out = ["# Generated from %s by schema2ldif.py: load into a running slapd with" % os.path.basename(path),
           "#   ldapadd -Y EXTERNAL -H ldapi:/// -f %s.ldif" % name,
           "dn: cn=%s,cn=schema,cn=config" % name, "objectClass: olcSchemaConfig", "cn: %s" % name]
    for kind, body in defs:
        body = re.sub(r"\s+", " ", body)
        key = "olcAttributeTypes" if kind == "attributetype" else "olcObjectClasses"
        out.append("%s: %s" % (key, body))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(convert(sys.argv[1]))
