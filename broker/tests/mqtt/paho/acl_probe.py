"""Subscribes to each --sub filter (one SUBSCRIBE each), prints
`SUBACK <filter> <granted>`, then `READY`, then `MSG <topic>` for every
message until one arrives on --until (exit 0) or 10 s pass (exit 3)."""

import queue

import common

p = common.parser(__doc__)
p.add_argument("--sub", action="append", default=[])
p.add_argument("--until", required=True)
args = p.parse_args()

c = common.client(args)
events = queue.Queue()
c.on_connect = lambda client, userdata, flags, rc: events.put(("connack", rc))
c.on_subscribe = lambda client, userdata, mid, granted: events.put(("suback", mid, granted))
c.on_message = lambda client, userdata, msg: events.put(("msg", msg.topic))
c.connect("127.0.0.1", args.port, keepalive=30)
c.loop_start()


def next_event():
    try:
        return events.get(timeout=10)
    except queue.Empty:
        common.fail("TIMEOUT")


kind, rc = next_event()
if rc != 0:
    common.fail("RC %d" % rc, 2)
for f in args.sub:
    _, mid = c.subscribe(f, qos=1)
    event = next_event()
    while event[0] != "suback":
        event = next_event()
    common.say("SUBACK %s %d" % (f, event[2][0]))
common.say("READY")
while True:
    event = next_event()
    if event[0] == "msg":
        common.say("MSG %s" % event[1])
        if event[1] == args.until:
            break
c.disconnect()
c.loop_stop()
