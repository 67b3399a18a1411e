"""Connects once and prints the CONNACK code as `RC <n>` (or `NO CONNACK`)."""

import threading

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import common

args = common.parser(__doc__).parse_args()
c = common.client(args)
done = threading.Event()
result = {}


def on_connect(client, userdata, flags, rc, properties=None):
    result["rc"] = rc.value if hasattr(rc, "value") else rc
    done.set()


c.on_connect = on_connect
if args.v5:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 60
    props.UserProperty = ("fleethub-test", "v5-properties")
    c.connect("127.0.0.1", args.port, keepalive=30, clean_start=True, properties=props)
else:
    c.connect("127.0.0.1", args.port, keepalive=30)
c.loop_start()
if done.wait(10):
    common.say("RC %d" % result["rc"])
else:
    common.say("NO CONNACK")
c.disconnect()
c.loop_stop()
