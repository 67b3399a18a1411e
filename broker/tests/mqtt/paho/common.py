"""Shared options of the paho test scripts: TLS to the edge with the dev CA."""

import argparse
import sys

import paho.mqtt.client as mqtt


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--user", default=None)
    p.add_argument("--password", default=None)
    p.add_argument("--v5", action="store_true", help="speak MQTT 5 with CONNECT properties")
    return p


def client(args):
    protocol = mqtt.MQTTv5 if args.v5 else mqtt.MQTTv311
    if args.v5:
        c = mqtt.Client(client_id=args.id, protocol=protocol)
    else:
        c = mqtt.Client(client_id=args.id, clean_session=True, protocol=protocol)
    c.tls_set(ca_certs=args.cafile)
    if args.user is not None:
        c.username_pw_set(args.user, args.password)
    return c


def say(line):
    print(line, flush=True)


def fail(line, code=3):
    say(line)
    sys.exit(code)
