"""What a signature costs per message: HMAC-SHA256 sign and verify (vitalstream.signing) of a
real alert and a real bed state, as the worker publishes them (made by the pure monitor from
an hour of a deteriorating patient's readings).

    python bench/signing.py      # prints µs per sign and per verify, and the message sizes
"""

from __future__ import annotations

import timeit

import orjson

from vitalstream.alerts import AlertPolicy
from vitalstream.monitor import Monitor
from vitalstream.samples import sample_from_dict
from vitalstream.signing import Keyring, generate_keys

T0_MS = 1_773_569_700_000


def messages() -> tuple[bytes, bytes]:
    """The largest alert and bed state of an hour of a patient going from NEWS2 0 to 11."""
    monitor = Monitor(AlertPolicy(), bed_state_interval_s=60)
    alerts, states = [], []
    for minute in range(60):
        frac, t_ms = minute / 59, T0_MS + minute * 60_000
        values = {"heart_rate": 80 + 45 * frac, "resp_rate": 16 + 12 * frac, "spo2": 97 - 7 * frac,
                  "systolic_bp": 120 - 20 * frac, "temperature": 37.0 + 1.6 * frac,
                  "consciousness": "A", "on_oxygen": False}
        result = monitor.process([sample_from_dict({"patient_id": "p1", "ward": "4B", "bed": "12", "parameter": k,
                                                    "value": v, "device_time_ms": t_ms, "source": "m",
                                                    "ingest_time_ms": t_ms}) for k, v in values.items()])
        alerts += [orjson.dumps(a.to_dict()) for a in result.alerts]
        states += [orjson.dumps(s) for s in monitor.bed_states(result.assessments)]
    return max(alerts, key=len), max(states, key=len)


def main() -> None:
    keys = generate_keys()
    ring = Keyring({k: (v["service"], v["secret"].encode()) for k, v in keys.items()}, current="worker-1")
    for name, topic, value in zip(("alert", "bed state"), ("alerts", "ward.state"), messages(), strict=True):
        headers = ring.sign(topic, b"4B", value)
        n = 20_000
        sign_us = min(timeit.repeat(lambda t=topic, v=value: ring.sign(t, b"4B", v),
                                    number=n, repeat=5)) / n * 1e6
        verify_us = min(timeit.repeat(lambda t=topic, v=value, h=headers: ring.verify(t, b"4B", v, h, ("worker",)),
                                      number=n, repeat=5)) / n * 1e6
        print(f"{name:9} {len(value):6,} bytes: sign {sign_us:.1f} µs, verify {verify_us:.1f} µs")


if __name__ == "__main__":
    main()
