//! The PostgreSQL connection of a user store: tokio-postgres on a thread of its own, with a
//! single-threaded runtime, fed one statement at a time over a channel.
//!
//! Why a thread: the store is synchronous (SQLite is), and it is called from the CLI (no runtime), from
//! the blocking pool, and at start from async code. A driver that blocks on a runtime of its own panics
//! inside another runtime; a thread that owns its runtime serves all three the same way.

use std::sync::mpsc;
use std::time::Duration;

use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{Client, Config, NoTls};

use crate::db::{Row, Value};
use crate::AuthError;

/// One statement may take this long (a database that stopped answering must not hang a login forever).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

enum Request {
    Execute(String, Vec<Value>),
    Query(String, Vec<Value>),
    Batch(String),
}

enum Response {
    Count(u64),
    Rows(Vec<Row>),
    Done,
}

struct Job {
    request: Request,
    reply: mpsc::Sender<Result<Response, PgError>>,
}

/// What went wrong talking to PostgreSQL, before the store says what it was doing.
#[derive(Debug)]
pub(crate) struct PgError(String);

impl PgError {
    pub fn context(self, context: &str) -> AuthError {
        AuthError::db(context, self.0)
    }
}

pub(crate) struct Pg {
    jobs: mpsc::Sender<Job>,
}

impl Pg {
    /// Connects (the first connection is made before this returns, so a wrong URL or password is said at
    /// once); later, a dropped connection is made again on the next statement.
    pub fn connect(url: &str) -> Result<Pg, AuthError> {
        let mut config: Config = url.parse().map_err(|e| {
            AuthError::db(
                "reading [users] database",
                format!("{e} (expected postgres://USER:PASSWORD@HOST:PORT/DATABASE)"),
            )
        })?;
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(AuthError::db(
                "connecting to PostgreSQL",
                "sslmode=require: TLS to PostgreSQL is not supported yet; connect over a private network or a \
                 local socket, or through a TLS tunnel (stunnel, pgbouncer with TLS)",
            ));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("ferry");
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("ferry-postgres".into())
            .spawn(move || serve(config, rx, ready_tx))
            .map_err(|e| AuthError::db("starting the PostgreSQL thread", e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Pg { jobs }),
            Ok(Err(e)) => Err(e.context("connecting to PostgreSQL")),
            Err(_) => Err(AuthError::db("connecting to PostgreSQL", "the connection thread ended")),
        }
    }

    fn call(&self, request: Request) -> Result<Response, PgError> {
        let (reply, answer) = mpsc::channel();
        self.jobs.send(Job { request, reply }).map_err(|_| PgError("the connection thread ended".into()))?;
        answer.recv().map_err(|_| PgError("the connection thread ended".into()))?
    }

    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, PgError> {
        match self.call(Request::Execute(placeholders(sql), params.to_vec()))? {
            Response::Count(n) => Ok(n),
            _ => Err(PgError("unexpected answer".into())),
        }
    }

    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, PgError> {
        match self.call(Request::Query(placeholders(sql), params.to_vec()))? {
            Response::Rows(rows) => Ok(rows),
            _ => Err(PgError("unexpected answer".into())),
        }
    }

    pub fn batch(&self, sql: &str) -> Result<(), PgError> {
        self.call(Request::Batch(sql.to_string())).map(|_| ())
    }
}

/// `?1` (SQLite's numbered parameters, as the store writes them) to `$1`. The store's SQL has no `?`
/// anywhere else.
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

fn serve(config: Config, jobs: mpsc::Receiver<Job>, ready: mpsc::Sender<Result<(), PgError>>) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(PgError(format!("cannot start its runtime: {e}"))));
            return;
        }
    };
    let mut client = match rt.block_on(connect(&config)) {
        Ok(c) => {
            let _ = ready.send(Ok(()));
            Some(c)
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    // Ends when the store (every sender) is dropped.
    for job in jobs {
        let mut result = Err(PgError("not connected".into()));
        // One retry on a fresh connection: PostgreSQL restarted, or a balancer dropped an idle connection.
        for attempt in 0..2 {
            if client.as_ref().is_none_or(Client::is_closed) {
                client = match rt.block_on(connect(&config)) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                };
            }
            let Some(c) = client.as_ref() else { break };
            result = rt.block_on(run(c, &job.request));
            let closed = c.is_closed();
            if result.is_ok() || !closed || attempt == 1 {
                break;
            }
            tracing::warn!("the PostgreSQL connection was closed; connecting again");
        }
        let _ = job.reply.send(result);
    }
}

async fn connect(config: &Config) -> Result<Client, PgError> {
    let (client, connection) = config.connect(NoTls).await.map_err(|e| PgError(describe(&e)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}

async fn run(client: &Client, request: &Request) -> Result<Response, PgError> {
    let work = async {
        match request {
            Request::Execute(sql, params) => {
                let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                client.execute(sql.as_str(), &refs).await.map(Response::Count)
            }
            Request::Query(sql, params) => {
                let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                let rows = client.query(sql.as_str(), &refs).await?;
                rows.iter().map(values).collect::<Result<Vec<_>, _>>().map(Response::Rows)
            }
            Request::Batch(sql) => client.batch_execute(sql).await.map(|_| Response::Done),
        }
    };
    match tokio::time::timeout(STATEMENT_TIMEOUT, work).await {
        Ok(r) => r.map_err(|e| PgError(describe(&e))),
        Err(_) => Err(PgError(format!("no answer within {}s", STATEMENT_TIMEOUT.as_secs()))),
    }
}

/// The server's own message where there is one (`password authentication failed for user "ferry"`).
fn describe(e: &tokio_postgres::Error) -> String {
    match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => db.message().to_string(),
        // "error connecting to server: Connection refused (os error 111)"
        (None, Some(cause)) => format!("{e}: {cause}"),
        (None, None) => e.to_string(),
    }
}

fn values(row: &tokio_postgres::Row) -> Result<Row, tokio_postgres::Error> {
    let mut out = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let v = match *col.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
            Type::INT4 => row.try_get::<_, Option<i32>>(i)?.map(|n| Value::Int(n.into())),
            Type::INT2 => row.try_get::<_, Option<i16>>(i)?.map(|n| Value::Int(n.into())),
            Type::BOOL => row.try_get::<_, Option<bool>>(i)?.map(|b| Value::Int(b.into())),
            _ => row.try_get::<_, Option<String>>(i)?.map(Value::Text),
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(out))
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(n) => match *ty {
                Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*n)?.to_sql(ty, out),
                Type::BOOL => (*n != 0).to_sql(ty, out),
                _ => n.to_sql(ty, out),
            },
            Value::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    // The server says each parameter's type from the statement; the value is converted to it above.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbered_parameters_become_dollars() {
        assert_eq!(
            super::placeholders("SELECT a FROM t WHERE x = ?1 AND y = ?12"),
            "SELECT a FROM t WHERE x = $1 AND y = $12"
        );
        assert_eq!(super::placeholders("SELECT '?' , ?"), "SELECT '?' , ?", "only ?N is a parameter");
    }
}
