//! The one place that decides what a smart host says on each connection: the scripted session
//! (a scenario's `[smarthost]` table, a server profile) or a replay of a cassette.
//!
//! Every server and the model's prediction get their conversations here, so `serve`, a
//! conformance case, the HTTP API's new script and the in-memory prediction cannot disagree on
//! what a script means (a script naming a `cassette` is a replay everywhere).

use std::path::Path;
use std::sync::Arc;

use super::cassette::{Cassette, TlsMark, load_cassette};
use super::profile::{Profile, ProfileError};
use super::script::SmartHostScript;
use super::{Accepted, Behaviour, Conversation, Session, SessionLimits};
use crate::proto::replay::{ReplayOptions, ReplaySession};

/// Makes the conversation for each new connection.
pub type ConversationFactory = Arc<dyn Fn(&Accepted) -> Box<dyn Conversation> + Send + Sync>;

/// What a smart host runs: a conversation per connection, and whether they may ask for TLS.
#[derive(Clone)]
pub struct Conversations {
    /// Makes each connection's conversation.
    pub factory: ConversationFactory,
    /// `Some(host name)` when a conversation may ask for STARTTLS: the driver then needs a
    /// certificate for that name before the first connection.
    pub tls_name: Option<String>,
}

impl std::fmt::Debug for Conversations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversations")
            .field("tls_name", &self.tls_name)
            .finish_non_exhaustive()
    }
}

/// A script's conversations could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConversationsError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The cassette the script names cannot be read or parsed: why, never its content.
    #[error("cassette {path}: {message}")]
    Cassette { path: String, message: String },
}

impl Conversations {
    /// The conversations `script` asks for: a replay of its `cassette` if it names one (read
    /// here: blocking, call it off a runtime's workers), otherwise the scripted session with
    /// `profile` in place of the one the script names, if given.
    pub fn for_script(
        script: &SmartHostScript,
        profile: Option<Profile>,
        limits: &SessionLimits,
    ) -> Result<Self, ConversationsError> {
        match &script.cassette {
            Some(path) => Ok(Self::replay_for_script(script, read(path)?, limits)),
            None => Self::scripted(script, profile, limits),
        }
    }

    /// The scripted session of `script` (its `cassette` not considered).
    pub fn scripted(
        script: &SmartHostScript,
        profile: Option<Profile>,
        limits: &SessionLimits,
    ) -> Result<Self, ConversationsError> {
        let script = Arc::new(script.clone());
        let behaviour = match profile {
            Some(profile) => script.behaviour_with(profile),
            None => script.behaviour()?,
        };
        Ok(Self::of_behaviour(Arc::new(behaviour), limits.clone()))
    }

    /// Sessions answering as `behaviour` says.
    pub fn of_behaviour(behaviour: Arc<dyn Behaviour>, limits: SessionLimits) -> Self {
        let limits = limits_for(behaviour.as_ref(), limits);
        let tls_name = limits.starttls.then(|| behaviour.hostname().to_owned());
        Conversations {
            factory: Arc::new(move |accepted| {
                Box::new(Session::new(
                    Arc::clone(&behaviour),
                    limits.clone(),
                    accepted,
                )) as Box<dyn Conversation>
            }),
            tls_name,
        }
    }

    /// Replays of `cassette`, already read (the one `script` names), matched as `script` says;
    /// of `limits` a replay keeps the idle timeout.
    pub fn replay_for_script(
        script: &SmartHostScript,
        cassette: Cassette,
        limits: &SessionLimits,
    ) -> Self {
        let options = ReplayOptions {
            mode: script.cassette_match.unwrap_or_default(),
            idle_timeout: limits.idle_timeout,
            ..ReplayOptions::default()
        };
        Self::replay(cassette, options)
    }

    /// Replays of `cassette`: connection n replays recorded session n.
    pub fn replay(cassette: Cassette, options: ReplayOptions) -> Self {
        // A session whose recorder terminated STARTTLS is replayed with a TLS handshake of our own.
        let tls_name = cassette
            .sessions
            .iter()
            .any(|s| s.tls == TlsMark::Terminated)
            .then(|| "localhost".to_owned());
        let cassette = Arc::new(cassette);
        Conversations {
            factory: Arc::new(move |accepted| {
                let index = usize::try_from(accepted.index).unwrap_or(usize::MAX);
                Box::new(ReplaySession::new(
                    Arc::clone(&cassette),
                    index,
                    options.clone(),
                    accepted.now,
                )) as Box<dyn Conversation>
            }),
            tls_name,
        }
    }
}

/// The limits a session of `behaviour` runs with: `limits`, with STARTTLS offered when the
/// behaviour advertises it (a profile whose server offers it, as Debian's Exim does, makes the
/// smart host offer it too, with a self-signed certificate).
pub fn limits_for(behaviour: &dyn Behaviour, mut limits: SessionLimits) -> SessionLimits {
    limits.starttls |= behaviour.ehlo().is_ok_and(|keywords| {
        crate::wire::ehlo::advertises(keywords.iter().map(String::as_str), "STARTTLS")
    });
    limits
}

fn read(path: &Path) -> Result<Cassette, ConversationsError> {
    load_cassette(path).map_err(|e| ConversationsError::Cassette {
        path: path.display().to_string(),
        message: e.reason(),
    })
}

#[cfg(test)]
mod tests {
    use std::any::Any;
    use std::net::Ipv4Addr;

    use super::*;

    fn accepted() -> Accepted {
        Accepted {
            index: 0,
            peer: Ipv4Addr::LOCALHOST.into(),
            now: std::time::Instant::now(),
            wall_clock: std::time::SystemTime::now(),
        }
    }

    /// The smart host's driver runs a conversation that is a [`Session`] as itself, without
    /// dynamic dispatch (`smarthost::server::serve`): a wrapper here would silently send every
    /// scripted session down the slower path.
    #[test]
    fn scripted_conversations_are_sessions_and_replays_are_not() {
        let limits = SessionLimits::default();
        let scripted = Conversations::scripted(&SmartHostScript::default(), None, &limits)
            .expect("the default script has conversations");
        let conversation = (scripted.factory)(&accepted());
        let any: &dyn Any = conversation.as_ref();
        assert!(any.is::<Session>());
        let replay = Conversations::replay(Cassette::default(), ReplayOptions::default());
        let conversation = (replay.factory)(&accepted());
        let any: &dyn Any = conversation.as_ref();
        assert!(!any.is::<Session>());
        assert!(any.is::<ReplaySession>());
    }
}
