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
    signing_key_id: str = Field(
        "", description="The key id among VITALSTREAM_SIGNING_KEYS that this process signs with.")

    model_path: str = Field("", description="Risk model file; empty uses the shipped model in models/.")
    risk_alerts: str = Field(
        "", description="Operating point at which the risk model raises a medium alert by itself: "
        "empty (the default) raises nothing, the risk is only shown; 'budget' (the model card's "
        "alert-budget threshold) or 'utility_optimal'. Validate locally first (models/MODEL_CARD.md).")

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
