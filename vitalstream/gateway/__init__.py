"""Gateway front doors: where device gateways hand vital signs to vitalstream.

- `mllp`: HL7 v2 over TCP with MLLP framing; every message gets an HL7 ACK.
- `fhir_http`: FHIR R4 Observation or Bundle POSTs; errors answer with an OperationOutcome.

Both check a message with the pure `vitalstream.ingest.parse_raw` to answer the sender,
then publish the original bytes to ``vitals.raw``, where the worker's ingest agent turns them
into samples or dead letters. A message the door refuses (broker down, oversized) is not
published and the sender is told to keep it (HL7 AR, HTTP 413/503), so nothing is lost
between the sender and the topic; an HL7 message type the MLLP door does not read is
answered AR too, and its bytes go to the dead-letter topic. `metrics` counts every message in exactly one outcome.
"""
