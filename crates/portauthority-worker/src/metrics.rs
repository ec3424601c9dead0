//! The metrics the worker loops record, through the `metrics` facade (a no-op until the
//! application installs a recorder; `serve` shows them at `/metrics`).

/// Gauge: commands on the bus the durable consumer has not been delivered yet, as the last
/// delivered message reported it (JetStream's `num_pending` in each message's metadata).
pub const BUS_CONSUMER_LAG: &str = "portauthority_bus_consumer_lag";
/// Counter: bus commands by `outcome` (applied, duplicate, dead_lettered, retried).
pub const BUS_COMMANDS: &str = "portauthority_bus_commands_total";
/// Counter: webhook delivery attempts by `outcome` (delivered, retry, failed, disabled).
pub const WEBHOOK_DELIVERIES: &str = "portauthority_webhook_deliveries_total";

/// Describes the metrics above to the installed recorder.
pub fn describe() {
    metrics::describe_gauge!(
        BUS_CONSUMER_LAG,
        "Bus commands not yet delivered to the durable consumer (as of its last message)"
    );
    metrics::describe_counter!(
        BUS_COMMANDS,
        "Bus commands handled, by outcome (applied, duplicate, dead_lettered, retried)"
    );
    metrics::describe_counter!(
        WEBHOOK_DELIVERIES,
        "Webhook delivery attempts, by outcome (delivered, retry, failed, disabled)"
    );
}

/// The `outcome` label of an attempt that leads to `next`.
pub(crate) fn delivery_outcome(next: &portauthority_store::Next) -> &'static str {
    use portauthority_store::Next;
    match next {
        Next::Delivered => "delivered",
        Next::RetryAt(_) => "retry",
        Next::Failed => "failed",
        Next::Disable(_) => "disabled",
    }
}
