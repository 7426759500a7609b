//! Against a real S3 server: `FERRY_TEST_S3` = "ENDPOINT REGION BUCKET KEY SECRET" (scripts/test starts
//! Garage and sets it, with FERRY_REQUIRE_S3=1 so that a missing server fails instead of skipping).

use ferry_s3::{S3Settings, S3Storage};

fn storage() -> Option<S3Storage> {
    let Ok(line) = std::env::var("FERRY_TEST_S3") else {
        assert!(std::env::var("FERRY_REQUIRE_S3").is_err(), "FERRY_REQUIRE_S3 is set but FERRY_TEST_S3 is not");
        return None;
    };
    let f: Vec<&str> = line.split_whitespace().collect();
    let settings = S3Settings {
        endpoint: f[0].into(),
        region: f[1].into(),
        bucket: f[2].into(),
        prefix: format!("rust-{}/", std::process::id()),
        access_key_id: Some(f[3].into()),
        secret_access_key: Some(f[4].into()),
        abort_incomplete_uploads_after: None,
    };
    Some(S3Storage::new(settings).expect("storage"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_over_the_copy_limit_are_copied_part_by_part() {
    let Some(s) = storage() else { return };
    let p = s.settings().prefix.clone();
    // Three parts of 5 MiB (the smallest S3 allows), the last one short; the same path a rename of a file
    // over 5 GiB takes with 1 GiB parts.
    let data: Vec<u8> = (0..(12 << 20) + 123).map(|i: u32| (i % 251) as u8).collect();
    s.put(&format!("{p}big"), data.clone()).await.expect("put");
    s.copy_in_parts(&format!("{p}big"), &format!("{p}copy"), data.len() as u64, 5 << 20).await.expect("copy");
    assert!(s.get(&format!("{p}copy")).await.expect("get") == data, "the copy is byte for byte");
    // A source that is not there: an error, and no object appears.
    let e = s.copy_in_parts(&format!("{p}missing"), &format!("{p}never"), 10 << 20, 5 << 20).await;
    assert!(e.is_err());
    assert!(s.get(&format!("{p}never")).await.is_err(), "no object from a failed copy");
}
