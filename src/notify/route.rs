//! Routing: which receivers get a notification, and the outbox messages that carry it. It owns
//! the routing rules and the dedupe keys that make one incident one page; it must not render
//! content nor send anything. Pure: tested with tables of cases.
//!
//! # Rules
//! - A notification goes to the receivers of every route that matches its kind and severity
//!   ([`Route::matches`]), each receiver once, in the order routes name them.
//! - A *resolve* also goes to every receiver that could have been paged for the incident (the
//!   receivers of any route matching an incident-opening event at `critical`), whatever the
//!   resolve's own severity: otherwise a pager route with `min_severity = "warning"` would open
//!   incidents and never see the `info` resume that closes them.
//! - An incident message's dedupe key is `GROUP/EVENT/RECEIVER` for a trigger and
//!   `GROUP/resolve/RECEIVER` for a resolve: the outbox keeps the first and skips later ones, so
//!   repeated failing analyses within one incident do not page again, an incident is resolved
//!   once per receiver, and a resolve never collides with a trigger of the same event (a
//!   retried rollback is resolved by a `rolled-back` event). The store appends `#N` for a key's
//!   N-th incident (a daemon-level key is reused after a resolve).
//! - Every incident message carries its incident (key, rollout, trigger or resolve), so the
//!   store orders its life ([`crate::store::MessageIncident`]).
//!   Informational messages are keyed by the step's time and the action's index in the step, so
//!   each occurrence is sent.

use crate::rollout::{EventKind, Severity};
use crate::rules::Route;
use crate::rules::model::EVENT_KINDS;
use crate::store::{IncidentStep, MessageIncident, NewMessage};

use super::notification::{IncidentAction, Notification, incident_action};

/// The receivers for an event of this kind and severity, each once, in route order.
pub fn receivers_for(routes: &[Route], event: EventKind, severity: Severity) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |route: &Route| {
        for r in &route.receivers {
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
    };
    for route in routes.iter().filter(|r| r.matches(event, severity)) {
        add(route);
    }
    if incident_action(event, severity) == IncidentAction::Resolve {
        for route in routes.iter().filter(|r| could_page(r)) {
            add(route);
        }
    }
    out
}

/// Whether a route matches some incident-opening event.
fn could_page(route: &Route) -> bool {
    EVENT_KINDS.iter().any(|(_, kind)| {
        incident_action(*kind, Severity::Critical) == IncidentAction::Trigger
            && route.matches(*kind, Severity::Critical)
    })
}

/// The outbox dedupe key of one notification for one receiver. `index` is the position of the
/// `Notify` action within its step.
pub fn dedupe_key(notification: &Notification, receiver: &str, index: usize) -> String {
    let event = event_name(notification.event);
    match notification.incident {
        IncidentAction::Trigger => format!("{}/{event}/{receiver}", notification.group_key),
        IncidentAction::Resolve => format!("{}/resolve/{receiver}", notification.group_key),
        IncidentAction::None => format!(
            "canaryd/{}/{}/{index}/{event}/{receiver}",
            notification.rollout,
            notification.at.timestamp_millis()
        ),
    }
}

/// The event's name as rule files spell it (`rolled-back`).
pub fn event_name(event: EventKind) -> &'static str {
    EVENT_KINDS
        .iter()
        .find(|(_, k)| *k == event)
        .map_or("unknown", |(name, _)| name)
}

/// The severity's name (`warning`).
pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// The outbox messages for one notification: one per receiver, ready for
/// [`Step::outbox`](crate::store::Step) or [`Store::enqueue`](crate::store::Store::enqueue).
/// Empty when no route matches.
pub fn outbox_messages(
    routes: &[Route],
    notification: &Notification,
    index: usize,
) -> Result<Vec<NewMessage>, serde_json::Error> {
    let payload = serde_json::to_value(notification)?;
    let incident = incident_of(notification);
    Ok(
        receivers_for(routes, notification.event, notification.severity)
            .into_iter()
            .map(|receiver| NewMessage {
                dedupe_key: dedupe_key(notification, &receiver, index),
                event: event_name(notification.event).to_string(),
                severity: severity_name(notification.severity).to_string(),
                payload: payload.clone(),
                incident: incident.clone(),
                receiver,
            })
            .collect(),
    )
}

/// The incident a notification's messages belong to, if it is part of one.
pub fn incident_of(notification: &Notification) -> Option<MessageIncident> {
    let action = match notification.incident {
        IncidentAction::Trigger => IncidentStep::Trigger,
        IncidentAction::Resolve => IncidentStep::Resolve,
        IncidentAction::None => return None,
    };
    Some(MessageIncident {
        key: notification.group_key.clone(),
        rollout: notification.about_rollout().map(str::to_string),
        action,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn rolled_back(severity: Severity) -> Notification {
        Notification::daemon(
            EventKind::RolledBack,
            severity,
            "m".to_string(),
            "canaryd/web/1".to_string(),
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            None,
        )
    }

    #[test]
    fn a_resolve_of_the_same_event_has_its_own_dedupe_key_and_incident() {
        // The state machine resolves a retried rollback with a `rolled-back` event of severity
        // info: it must not collide with the trigger.
        let trigger = rolled_back(Severity::Critical);
        let resolve = rolled_back(Severity::Info);
        assert_eq!(trigger.incident, IncidentAction::Trigger);
        assert_eq!(resolve.incident, IncidentAction::Resolve);
        assert_eq!(
            dedupe_key(&trigger, "pager", 0),
            "canaryd/web/1/rolled-back/pager"
        );
        assert_eq!(
            dedupe_key(&resolve, "pager", 0),
            "canaryd/web/1/resolve/pager"
        );
        let of = |n: &Notification| incident_of(n).map(|i| (i.key, i.rollout, i.action));
        assert_eq!(
            of(&trigger),
            Some(("canaryd/web/1".to_string(), None, IncidentStep::Trigger))
        );
        assert_eq!(
            of(&resolve),
            Some(("canaryd/web/1".to_string(), None, IncidentStep::Resolve))
        );
        let info = Notification::daemon(
            EventKind::Started,
            Severity::Info,
            "m".to_string(),
            "k".to_string(),
            trigger.at,
            None,
        );
        assert_eq!(incident_of(&info), None);
    }
}
