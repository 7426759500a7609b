//! The S3 requests OpenDAL does not expose, signed with the SigV4 signer and sent with the HTTP client
//! OpenDAL already uses:
//!
//! - ListMultipartUploads and AbortMultipartUpload: a node killed in the middle of an upload leaves its
//!   parts in the bucket (they cost storage and never become an object). At start, Ferry aborts the
//!   incomplete uploads under its prefix older than `abort_incomplete_uploads_after_secs` (a day by
//!   default: other nodes' uploads in progress are younger than that).
//! - UploadPartCopy: CopyObject copies at most 5 GiB; a larger object is copied server-side part by part
//!   (a rename on S3 is a copy then a delete).

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqsign_aws_core::Credential;
use reqsign_aws_v4::RequestSigner;
use reqsign_core::{Context, SignRequest};

/// One incomplete multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incomplete {
    pub key: String,
    pub upload_id: String,
    /// Unix seconds.
    pub initiated: i64,
}

pub struct RawS3 {
    client: reqwest::Client,
    endpoint: String,
    bucket: String,
    region: String,
    credential: Credential,
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl RawS3 {
    pub fn new(endpoint: &str, bucket: &str, region: &str, key: String, secret: String) -> RawS3 {
        RawS3 {
            client: reqwest::Client::new(),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            bucket: bucket.to_string(),
            region: region.to_string(),
            credential: Credential {
                access_key_id: key,
                secret_access_key: secret,
                session_token: None,
                expires_in: None,
            },
        }
    }

    async fn send(&self, method: http::Method, url: String) -> io::Result<String> {
        self.send_with(method, url, &[], String::new()).await
    }

    async fn send_with(
        &self,
        method: http::Method,
        url: String,
        headers: &[(&str, String)],
        body: String,
    ) -> io::Result<String> {
        let mut builder =
            http::Request::builder().method(method).uri(&url).header("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let (mut parts, ()) = builder.body(()).map_err(other)?.into_parts();
        RequestSigner::new("s3", &self.region)
            .sign_request(&Context::new(), &mut parts, Some(&self.credential), None)
            .await
            .map_err(other)?;
        let mut request = self.client.request(parts.method.clone(), parts.uri.to_string());
        for (name, value) in &parts.headers {
            request = request.header(name, value);
        }
        // A part copy of 1 GiB is done by the server while the request waits.
        let response = request.timeout(Duration::from_secs(600)).body(body).send().await.map_err(other)?;
        let status = response.status();
        let body = response.text().await.map_err(other)?;
        if !status.is_success() {
            return Err(io::Error::other(format!("{status}: {}", body.chars().take(300).collect::<String>())));
        }
        Ok(body)
    }

    /// Every incomplete upload whose key starts with `prefix` (all pages).
    pub async fn list(&self, prefix: &str) -> io::Result<Vec<Incomplete>> {
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut url =
                format!("{}/{}?uploads&prefix={}", self.endpoint, encode(&self.bucket, false), encode(prefix, true));
            if let Some((key, id)) = &markers {
                url.push_str(&format!("&key-marker={}&upload-id-marker={}", encode(key, true), encode(id, true)));
            }
            let page = self.send(http::Method::GET, url).await?;
            out.extend(parse_uploads(&page));
            if tag(&page, "IsTruncated").as_deref() != Some("true") {
                return Ok(out);
            }
            match (tag(&page, "NextKeyMarker"), tag(&page, "NextUploadIdMarker")) {
                (Some(k), Some(u)) if Some((&k, &u)) != markers.as_ref().map(|(a, b)| (a, b)) => markers = Some((k, u)),
                _ => return Ok(out),
            }
        }
    }

    pub async fn abort(&self, upload: &Incomplete) -> io::Result<()> {
        let url = format!(
            "{}/{}/{}?uploadId={}",
            self.endpoint,
            encode(&self.bucket, false),
            encode(&upload.key, false),
            encode(&upload.upload_id, true)
        );
        self.send(http::Method::DELETE, url).await.map(|_| ())
    }

    /// Aborts the incomplete uploads under `prefix` initiated more than `age` ago; how many.
    pub async fn sweep(&self, prefix: &str, age: Duration) -> io::Result<usize> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let cutoff = now - age.as_secs() as i64;
        let mut aborted = 0;
        for upload in self.list(prefix).await? {
            if upload.initiated <= cutoff {
                self.abort(&upload).await?;
                aborted += 1;
            }
        }
        Ok(aborted)
    }
}

impl RawS3 {
    fn object_url(&self, key: &str) -> String {
        format!("{}/{}/{}", self.endpoint, encode(&self.bucket, false), encode(key, false))
    }

    /// Copies object `from` (`size` bytes) to `to` inside the bucket with UploadPartCopy, `part` bytes at
    /// a time (at least 5 MiB, as S3 wants of every part but the last; S3 servers also refuse part copies
    /// from a source under 5 MiB: Ferry uses this above CopyObject's 5 GiB). The copy appears only when
    /// complete; on failure the multipart upload is aborted.
    pub async fn copy_in_parts(&self, from: &str, to: &str, size: u64, part: u64) -> io::Result<()> {
        let created = self.send(http::Method::POST, format!("{}?uploads", self.object_url(to))).await?;
        let upload_id = tag(&created, "UploadId").ok_or_else(|| other("CreateMultipartUpload: no UploadId"))?;
        let source = format!("/{}/{}", encode(&self.bucket, false), encode(from, false));
        let result = async {
            let mut done = String::from("<CompleteMultipartUpload>");
            let (mut start, mut number) = (0u64, 1u32);
            while start < size || number == 1 {
                let end = (start + part).min(size).max(start + 1) - 1;
                let url = format!("{}?partNumber={number}&uploadId={}", self.object_url(to), encode(&upload_id, true));
                let headers = [
                    ("x-amz-copy-source", source.clone()),
                    ("x-amz-copy-source-range", format!("bytes={start}-{end}")),
                ];
                let copied = self.send_with(http::Method::PUT, url, &headers, String::new()).await?;
                let etag = tag(&copied, "ETag").ok_or_else(|| other("UploadPartCopy: no ETag"))?;
                done.push_str(&format!("<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>", escape(&etag)));
                start = end + 1;
                number += 1;
            }
            done.push_str("</CompleteMultipartUpload>");
            let url = format!("{}?uploadId={}", self.object_url(to), encode(&upload_id, true));
            let answer = self.send_with(http::Method::POST, url, &[], done).await?;
            // CompleteMultipartUpload may answer 200 with an error inside.
            if answer.contains("<Error>") {
                return Err(other(format!("CompleteMultipartUpload: {}", tag(&answer, "Message").unwrap_or_default())));
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = self.abort(&Incomplete { key: to.to_string(), upload_id, initiated: 0 }).await;
        }
        result
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Percent-encoding for a URL path (`/` kept unless `query`) or a query value, as SigV4 canonicalises.
fn encode(s: &str, query: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b'/' if !query => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The text of the first `<name>` element, unescaped.
fn tag(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(unescape(&xml[start..end]))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// The `<Upload>` entries of a ListMultipartUploadsResult.
fn parse_uploads(xml: &str) -> Vec<Incomplete> {
    xml.split("<Upload>")
        .skip(1)
        .filter_map(|chunk| {
            let chunk = &chunk[..chunk.find("</Upload>")?];
            Some(Incomplete {
                key: tag(chunk, "Key")?,
                upload_id: tag(chunk, "UploadId")?,
                initiated: tag(chunk, "Initiated").and_then(|t| unix_seconds(&t)).unwrap_or(0),
            })
        })
        .collect()
}

/// `2026-12-07T01:37:30.835Z` to Unix seconds.
fn unix_seconds(t: &str) -> Option<i64> {
    let (date, time) = t.split_once('T')?;
    let mut d = date.split('-').map(|n| n.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut hms = time.trim_end_matches('Z').split(':');
    let (h, min) = (hms.next()?.parse::<i64>().ok()?, hms.next()?.parse::<i64>().ok()?);
    let sec = hms.next()?.split('.').next()?.parse::<i64>().ok()?;
    let days = ferry_vfs::listing::days_from_civil(y, u32::try_from(m).ok()?, u32::try_from(day).ok()?);
    Some(days * 86_400 + h * 3600 + min * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>ferry</Bucket>
<IsTruncated>true</IsTruncated><NextKeyMarker>users/b/y</NextKeyMarker><NextUploadIdMarker>u2</NextUploadIdMarker>
<Upload><Key>users/a/x &amp; y.bin</Key><UploadId>u1</UploadId><Initiated>2026-12-07T01:37:30.835Z</Initiated></Upload>
<Upload><Key>users/b/y</Key><UploadId>u2</UploadId><Initiated>1970-01-02T00:00:01Z</Initiated></Upload>
</ListMultipartUploadsResult>"#;

    #[test]
    fn pages_of_incomplete_uploads() {
        let ups = parse_uploads(PAGE);
        assert_eq!(ups.len(), 2);
        assert_eq!(ups[0].key, "users/a/x & y.bin", "entities unescaped");
        assert_eq!((ups[0].upload_id.as_str(), ups[0].initiated), ("u1", 1_796_607_450));
        assert_eq!(ups[1].initiated, 86_401);
        assert_eq!(tag(PAGE, "IsTruncated").as_deref(), Some("true"));
        assert_eq!(tag(PAGE, "NextUploadIdMarker").as_deref(), Some("u2"));
        assert!(parse_uploads("<ListMultipartUploadsResult></ListMultipartUploadsResult>").is_empty());
    }

    #[test]
    fn urls_are_encoded_as_sigv4_wants() {
        assert_eq!(encode("users/a b+c", false), "users/a%20b%2Bc");
        assert_eq!(encode("users/a", true), "users%2Fa");
        assert_eq!(encode("ü", true), "%C3%BC");
    }
}
