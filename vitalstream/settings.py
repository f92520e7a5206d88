"""All configuration in one object, read from ``VITALSTREAM_*`` environment variables.

Every setting is documented where it is declared, with its variable and default;
`vitalstream config` prints them (secrets masked) and `deploy/CONFIG.md` is generated
from this file (a test checks they agree).

>>> s = Settings(kafka_bootstrap="127.0.0.1:9092")
>>> s.kafka_bootstrap
'127.0.0.1:9092'
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VITALSTREAM_", extra="ignore")

    kafka_bootstrap: str = Field(
        "",
        description="Kafka bootstrap servers, host:port[,host:port]. Empty: `vitalstream demo` "
        "starts the embedded broker on a free loopback port.",
    )
    kafka_security_protocol: str = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_ssl_cafile: str = Field("", description="CA bundle used to verify the broker (SSL).")
    kafka_ssl_certfile: str = Field("", description="Client certificate for mutual TLS.")
    kafka_ssl_keyfile: str = Field("", description="Client private key for mutual TLS.")
    kafka_sasl_mechanism: str = Field("PLAIN", description="SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.")
    kafka_sasl_username: str = Field("", description="SASL user name.")
    kafka_sasl_password: SecretStr = Field(SecretStr(""), description="SASL password (secret).")
    kafka_connect_timeout_s: float = Field(
        5.0, description="How long a command retries, quietly, to reach the broker when it starts; "
        "then it prints \"cannot reach the broker at HOST:PORT (reason)\" and exits 2. Raise it "
        "where workers may start before Kafka (deploy/vitalstream.env sets 60).")

    app_id: str = Field("vitalstream", description="Faust application id (consumer group and table prefix).")
    topic_raw: str = Field("vitals.raw", description="Topic the gateways write to.")
    topic_vitals: str = Field("vitals", description="Canonical samples, keyed by patient.")
    topic_deadletter: str = Field("vitals.deadletter", description="Rejected input with its reason.")
    topic_alerts: str = Field("alerts", description="Alerts, keyed by ward.")
    topic_acks: str = Field("alerts.ack", description="Acknowledgements from nursing stations.")
    kafka_rebalance_timeout_s: float = Field(
        5.0, description="Consumer-group rebalance timeout. Some brokers (tansu) hold a joining "
        "member this long, so it bounds how fast a worker starts and a failed worker's "
        "partitions move; a batch never takes near this long.")
    kafka_session_timeout_s: float = Field(
        10.0, description="A worker silent this long is declared dead and its partitions move.")
    topic_patient_settings: str = Field(
        "patients.settings", description="Per-patient settings (SpO2 scale 2, thresholds) with who and when.")
    topic_bed_state: str = Field(
        "ward.state", description="Latest state of each bed (NEWS2, values, trends, risk), keyed by ward.")
    bed_state_interval_s: float = Field(
        60.0, description="A bed's state is published at most this often (device time), and at once when its NEWS2 changes.")
    topic_partitions: int = Field(4, description="Partitions of the topics vitalstream creates.")
    topic_audit: str = Field(
        "audit", description="The audit trail: every decision and human action, hash-chained per "
        "partition, append-only (no compaction, kept for years: deploy/AUDIT_TOPIC.md). Holds patient "
        "identifiers: readable by the safety and audit roles only (docs/governance.md).")
    topic_audit_intake: str = Field(
        "audit.intake", description="Signed human actions from stations and oversight, forwarded by "
        "the worker into the audit trail (vitalstream.governance.audit.record_action).")
    topic_control: str = Field(
        "control.killswitch", description="Signed kill-switch instructions (admin key, admin role).")
    policy: str = Field(
        "", description="The live alert policy's settings: JSON of PolicyConfig fields to change "
        "(e.g. {\"news2_medium\": 4, \"persistence_s\": {\"high\": 30}}; a mapping field changes only the "
        "keys given); empty: the defaults of docs/alerts.md. Every field and its bounds: the table "
        "below. Out of bounds, the worker does not start (one line naming the field).")
    shadow: str = Field(
        "", description="Silent mode: a candidate run beside the live one, its alerts on "
        "VITALSTREAM_TOPIC_ALERTS_SHADOW only. JSON {\"policy\": {PolicyConfig fields}, "
        "\"model_version\": a model in models/}; empty: no shadow. Refused at start if unknown.")
    topic_alerts_shadow: str = Field(
        "alerts.shadow", description="The shadow's alerts (never read by stations); `vitalstream compare` reads them.")
    drift_reference_path: str = Field(
        "", description="The training distribution the drift (PSI) gauges compare against; empty: "
        "`<model>_reference.json` beside the risk model (models/sepsis_risk_reference.json).")
    drift_census_interval_s: float = Field(
        10.0, description="How often (wall time) the worker counts its patients for the quality "
        "gauges and takes one drift observation per patient.")
    drift_window_censuses: int = Field(
        30, description="PSI is computed over this many of the latest censuses (5 min at the default interval).")
    drift_min_observations: int = Field(
        200, description="Fewer values than this in the PSI window: the gauge is NaN (too few to say).")
    false_alarm_share_limit: float = Field(
        0.8, description="Share of answers saying no action above which the false-alarm rule fires "
        "(exported as vitalstream_false_alarm_share_limit, which the rule reads).")
    no_action_answer_codes: str = Field(
        "expected_or_known,artefact_or_equipment,comfort_care,other,no_action,false_alarm",
        description="Answer reason codes that mean the alert needed no action (comma-separated).")
    topic_demographics: str = Field(
        "patients.demographics", description="Age and sex from the admission system, {patient_id, "
        "age_years, sex, source, at_ms}: the risk model's context inputs and the subgroups of the "
        "quality metrics and audits.")
    audit_tail_records: int = Field(
        5000, description="Records of each audit partition a worker reads back when it gains the "
        "partition, to continue the chain and drop a re-sent record (more than a worker sends "
        "between two commits).")

    worker_web_port: int = Field(6066, description="Port of the worker's HTTP server (/metrics, /health, /ready).")
    worker_web_host: str = Field("127.0.0.1", description="Interface the worker's HTTP server binds.")
    state_dir: str = Field(".vitalstream", description="Worker's local directory (Faust's data). Per-patient state lives in the patients changelog topic, not here. Not the PhysioNet data folder (VITALSTREAM_DATA_DIR).")

    risk_interval_s: float = Field(
        60.0, description="The risk model scores a patient at most once per this much device time "
        "(its inputs are 2 h and 6 h windows); assessments in between carry the last risk with its time. "
        "NEWS2 is scored at every reading.")
    news2_window_s: int = Field(
        1800,
        description="NEWS2 uses the latest value of each parameter measured within this many "
        "seconds of device time (30 min: readings taken separately still make a score).",
    )
    device_time_max_ahead_s: float = Field(
        300.0, ge=0, description="A reading (or technical event) stamped more than this many seconds "
        "after the wall clock is refused as `future_time` by ingest and both front doors: device "
        "clocks drift a little, but one reading far ahead would move its patient's clock and make "
        "every later real reading look late.")
    ingest_batch_size: int = Field(
        20000, description="Max raw messages the ingest stage parses and publishes per batch.")
    state_save_interval_s: float = Field(
        0.0, description="A patient's state is written to the changelog at once when its alerts or "
        "settings change, else at most this often (device time). 0 (the default): after every batch "
        "that touched the patient, so a worker taking over a patient (crash, rebalance) resumes "
        "exactly where the last committed batch left it. A larger value trades that for throughput: "
        "the readings of up to this much device time can then be missing after a takeover.")
    batch_size: int = Field(1000, description="Max events taken from a stream in one batch.")
    batch_timeout_s: float = Field(0.005, description="Max wait to fill a batch, seconds.")

    signing_keys: SecretStr = Field(
        SecretStr(""), description="Keys that sign and verify control and alert messages: JSON "
        "{key_id: {\"service\": worker|station|gateway|admin, \"secret\": at least 32 characters}} "
        "(secret). Every process that reads alerts or control messages needs the keys of the "
        "services that write them; see vitalstream/signing.py and docs/reliability.md.")
    signing_keys_file: str = Field(
        "", description="A file holding the VITALSTREAM_SIGNING_KEYS JSON (a mounted secret: "
        "preferred in production, not visible in the environment); read when "
        "VITALSTREAM_SIGNING_KEYS is empty. Give each service only the keys it needs: "
        "deploy/make-secrets.sh writes one file per service.")
    signing_key_id: str = Field(
        "", description="The key id among VITALSTREAM_SIGNING_KEYS that this process signs with; "
        "empty: the first key of its own service (worker or station). The worker and the station "
        "refuse to start without signing keys (exit 2).")

    gateway_tokens: SecretStr = Field(
        SecretStr(""), description="Bearer tokens the FHIR door accepts, comma-separated, each at least "
        "32 characters (secret; kept only as SHA-256 digests). With none here or in "
        "VITALSTREAM_GATEWAY_TOKENS_FILE, the FHIR door asks for no token.")
    gateway_tokens_file: str = Field(
        "", description="File of FHIR door bearer tokens, one a line (`#` comments): a mounted secret, "
        "preferred to VITALSTREAM_GATEWAY_TOKENS.")
    gateway_mllp_allow: str = Field(
        "", description="Networks (CIDRs, comma-separated) the MLLP door takes connections from; any "
        "other source is closed at once. Empty: any source.")
    gateway_tls_certfile: str = Field(
        "", description="Server certificate (PEM) of both front doors: set, they speak TLS only "
        "(HTTPS; MLLP over TLS).")
    gateway_tls_keyfile: str = Field("", description="Private key of VITALSTREAM_GATEWAY_TLS_CERTFILE (if not in it).")
    gateway_tls_client_cafile: str = Field(
        "", description="CA bundle of the gateways' client certificates: set, both doors require "
        "mutual TLS (a client without a certificate signed by it is refused in the handshake).")
    gateway_allow_unauthenticated: bool = Field(
        False, description="Let a front door bound to a non-loopback interface run without tokens, "
        "allow-list or mutual TLS. Off: such a door refuses to start (exit 2).")
    gateway_idle_timeout_s: float = Field(
        120.0, gt=0, description="A front-door connection with no complete request or message for "
        "this long is closed (idle MLLP sessions, slowloris headers).")
    gateway_request_timeout_s: float = Field(
        30.0, gt=0, description="A FHIR request body not received whole within this many seconds "
        "is answered 408 with an OperationOutcome.")
    gateway_max_connections: int = Field(
        512, ge=1, description="Open connections a front door holds at most; more are closed at once "
        "(counted in vitalstream_gateway_connections_refused).")

    model_path: str = Field("", description="Risk model file; empty uses the shipped model in models/.")
    site_code_table: str = Field(
        "", description="Site code table: a CSV file mapping vendor-private codes (e.g. Philips "
        "MDIL in OBX-3/OBX-6, or a FHIR coding's system and code) to canonical parameters and "
        "UCUM units (columns kind,system,code,maps_to; format in docs/ingest.md). Read by the "
        "worker, the gateways and `vitalstream ingest` at start; a bad file stops them with one "
        "line. Empty: the built-in MDC and LOINC tables only.")
    topic_oversight: str = Field(
        "alerts.oversight", description="Answers, snoozes, dispositions and care goals from stations, "
        "forwarded by patient into vitals like acknowledgements.")
    topic_census: str = Field(
        "census", description="Admissions, transfers and discharges (from HL7 ADT and FHIR Encounter), "
        "keyed by patient, forwarded into vitals.")
    escalation_chains: str = Field(
        "", description="Escalation chain per ward as JSON {ward or \"*\": {\"steps\": [{\"role\", "
        "\"after_s\": seconds or {priority: seconds}}, ...], \"answer_within_s\": {priority: seconds}}}; "
        "empty: bedside nurse, charge nurse after 2/5/15 min (high/medium/low), rapid response after "
        "5/10 min more (high/medium), answer within 15/30/60 min. Checked at start "
        "(vitalstream/oversight/config.py, docs/station.md).")
    snooze_max_s: str = Field(
        "", description="Longest snooze by priority, JSON {\"high\": s, \"medium\": s, \"low\": s}; "
        "empty: 300/1800/3600 s.")
    census_beds: str = Field(
        "", description="The beds of each ward, JSON {ward: \"1-24\" or [bed, ...]}: an ADT or Encounter "
        "for another bed is refused (HL7 AE with ERR, FHIR 422). Empty: any bed.")
    census_required: bool = Field(
        False, description="Monitor only patients admitted by the census (ADT/Encounter): readings of "
        "anyone else are kept on vitals but not scored, and counted (vitalstream_census_quarantined). "
        "Off: a patient's first reading admits them, as before. Readings of a discharged patient are "
        "never scored until they are admitted again.")
    max_patients: int = Field(
        20000, description="Most patients one worker monitors at once (a memory bound: about 100 KB each with "
        "the feature engine). Readings of a new patient beyond it are kept on vitals but not scored, counted in "
        "vitalstream_patients_over_limit_total; the gauge vitalstream_patients_limit exports it for the alert "
        "rule. Census admissions (ADT) are taken beyond it.", ge=1)
    evict_silent_after_s: float = Field(
        6 * 3600.0, description="A patient with no reading for this long (stream time), no open alert and "
        "nothing held by oversight is evicted from memory (their last state stays in the changelog, and a "
        "restarted worker does not restore them); their next reading admits them afresh.", gt=0)
    oversight_interval_s: float = Field(
        1.0, description="How often the worker's timer calls the next responder, ends snoozes and "
        "expires care goals (wall time; only patients with something due are looked at).")
    risk_alerts: str = Field(
        "", description="Operating point at which the risk model raises a medium alert by itself: "
        "empty (the default) raises nothing, the risk is only shown; 'budget' (the model card's "
        "alert-budget threshold), 'utility_optimal', or 'news2_5_burden' / 'news2_7_burden' (the "
        "model at the alert burden of NEWS2 >= 5 / >= 7). Validate locally first (docs/risk-model.md).")

    def policy_config(self) -> Any:
        """The ward alert policy (`PolicyConfig`) with ``policy`` applied, checked against
        `vitalstream.policy_settings.POLICY_BOUNDS` (PolicySettingsError, one line)."""
        from vitalstream.policy_settings import policy_config

        return policy_config(self.policy)

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Security arguments for aiokafka clients (empty for PLAINTEXT)."""
        kwargs: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if "SSL" in self.kafka_security_protocol:
            import ssl

            context = ssl.create_default_context(cafile=self.kafka_ssl_cafile or None)
            if self.kafka_ssl_certfile:
                context.load_cert_chain(self.kafka_ssl_certfile, self.kafka_ssl_keyfile or None)
            kwargs["ssl_context"] = context
        if "SASL" in self.kafka_security_protocol:
            kwargs["sasl_mechanism"] = self.kafka_sasl_mechanism
            kwargs["sasl_plain_username"] = self.kafka_sasl_username
            kwargs["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        return kwargs

    def faust_credentials(self) -> Any:
        """The same security settings as Faust broker credentials (None for PLAINTEXT)."""
        import faust

        kwargs = self.kafka_client_kwargs()
        context = kwargs.get("ssl_context")
        if "SASL" in self.kafka_security_protocol:
            return faust.SASLCredentials(
                username=self.kafka_sasl_username,
                password=self.kafka_sasl_password.get_secret_value(),
                mechanism=self.kafka_sasl_mechanism, ssl_context=context,
            )
        if context is not None:
            return faust.SSLCredentials(context)
        return None

    def masked(self) -> dict[str, Any]:
        """Settings as printable values, secrets masked."""
        return {
            name: ("**********" if isinstance(value, SecretStr) and value.get_secret_value() else
                   str(value) if isinstance(value, SecretStr) else value)
            for name, value in self
        }
