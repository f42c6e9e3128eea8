//! COPY in and out, over the wire, and the all-or-nothing rule for uploads.

use bytes::Bytes;
use futures::{SinkExt, TryStreamExt};

use crate::harness::{TestServer, count, message, sqlstate};

async fn copy_in(c: &tokio_postgres::Client, sql: &str, data: &str) -> Result<u64, tokio_postgres::Error> {
    let sink = c.copy_in(sql).await?;
    futures::pin_mut!(sink);
    // Several small chunks, so that rows straddle CopyData messages.
    for chunk in data.as_bytes().chunks(7) {
        sink.send(Bytes::copy_from_slice(chunk)).await?;
    }
    sink.finish().await
}

async fn copy_out(c: &tokio_postgres::Client, sql: &str) -> Vec<u8> {
    let stream = c.copy_out(sql).await.unwrap();
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    chunks.concat()
}

#[tokio::test]
async fn csv_and_text_in_then_csv_text_and_binary_out() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE t (id BIGINT NOT NULL, name TEXT, amount DOUBLE, at TIMESTAMP)").await.unwrap();
    let csv = "id,name,amount,at\n1,\"a, quoted\",1.5,2025-01-01 00:00:00\n2,,2.5,\n3,\"\",,2025-01-03 10:00:00\n";
    let n = copy_in(&c, "COPY t FROM STDIN WITH (FORMAT csv, HEADER true)", csv).await.unwrap();
    assert_eq!(n, 3);
    let text = "4\ttab\\there\t4.5\t\\N\n";
    assert_eq!(copy_in(&c, "COPY t FROM STDIN", text).await.unwrap(), 1);
    let cols = "5,only id\n";
    assert_eq!(copy_in(&c, "COPY t (id, name) FROM STDIN WITH (FORMAT csv)", cols).await.unwrap(), 1);

    let out = copy_out(&c, "COPY (SELECT id, name, amount FROM t ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER true)").await;
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "id,name,amount\n1,\"a, quoted\",1.5\n2,,2.5\n3,\"\",\n4,tab\there,4.5\n5,only id,\n"
    );
    let out = copy_out(&c, "COPY (SELECT id, name FROM t WHERE id IN (2, 4) ORDER BY id) TO STDOUT").await;
    assert_eq!(String::from_utf8(out).unwrap(), "2\t\\N\n4\ttab\\there\n");

    // Binary: the PGCOPY signature, then one tuple per row, then the -1 trailer.
    let out = copy_out(&c, "COPY t TO STDOUT WITH (FORMAT binary)").await;
    assert!(out.starts_with(b"PGCOPY\n\xff\r\n\0"));
    assert!(out.ends_with(&[0xff, 0xff]));
    let n = count(&c, "t").await;
    assert_eq!(n, 5);
}

#[tokio::test]
async fn a_malformed_row_names_its_line_and_commits_nothing() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE t (id BIGINT, name TEXT); INSERT INTO t VALUES (0, 'before')").await.unwrap();
    let mut data = String::from("id,name\n");
    for i in 1..=100_000 {
        data.push_str(&format!("{i},n{i}\n"));
    }
    data.push_str("oops,bad\n");
    let r = copy_in(&c, "COPY t FROM STDIN WITH (FORMAT csv, HEADER)", &data).await;
    let e = r.as_ref().map(|_| ()).map_err(|e| e.to_string());
    assert_eq!(sqlstate(r), "22P02", "{e:?}");
    let msg = message(copy_in(&c, "COPY t FROM STDIN WITH (FORMAT csv)", "1,a\n2\n").await);
    assert!(msg.contains("line 2"), "{msg}");
    let msg = message(copy_in(&c, "COPY t FROM STDIN WITH (FORMAT csv, HEADER)", &data).await);
    assert!(msg.contains("line 100002") && msg.contains("\"oops\""), "{msg}");
    // Nothing of the failed uploads is visible, and the connection still works.
    let n = count(&c, "t").await;
    assert_eq!(n, 1);
}

#[tokio::test]
async fn an_abandoned_copy_commits_nothing() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE t (id BIGINT)").await.unwrap();
    {
        let sink = c.copy_in("COPY t FROM STDIN").await.unwrap();
        futures::pin_mut!(sink);
        for i in 0..1000 {
            sink.send(Bytes::from(format!("{i}\n"))).await.unwrap();
        }
        // Dropped without finish: tokio-postgres sends CopyFail.
    }
    let n = count(&c, "t").await;
    assert_eq!(n, 0);
    // A COPY into a table that does not exist fails before any data is sent.
    assert_eq!(sqlstate(c.copy_in::<_, Bytes>("COPY nope FROM STDIN").await.map(|_| ())), "42P01");
}

#[tokio::test]
async fn a_large_upload_is_one_commit() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE big (id BIGINT, v DOUBLE, s TEXT)").await.unwrap();
    let mut data = String::new();
    for i in 0..300_000 {
        data.push_str(&format!("{i},{}.5,s{}\n", i % 97, i % 13));
    }
    let sink = c.copy_in("COPY big FROM STDIN WITH (FORMAT csv)").await.unwrap();
    futures::pin_mut!(sink);
    for chunk in data.as_bytes().chunks(65_536) {
        sink.send(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 300_000);
    let row = c.query_one("SELECT count(*), sum(id) FROM big", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 300_000);
    assert_eq!(row.get::<_, i64>(1), 300_000 * 299_999 / 2);
    // One CREATE, one COPY: two entries in the Delta log.
    let log = std::fs::read_dir(server.warehouse.join("public/big/_delta_log"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".json"))
        .count();
    assert_eq!(log, 2);
}
