// pgjdbc against a running hindsight, doing what DBeaver and Metabase do through it: connect,
// browse DatabaseMetaData, prepared statements past the server-side prepare threshold, batches,
// fetch sizes (portals read in parts), CopyManager, and SQLSTATEs.
// Run by tests/it/clients.rs as `java -cp postgresql.jar JdbcCheck.java PORT`.
import java.io.StringReader;
import java.io.StringWriter;
import java.sql.*;
import java.util.*;

import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;

public class JdbcCheck {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/hindsight?user=hindsight";
        try (Connection c = DriverManager.getConnection(url)) {
            DatabaseMetaData meta = c.getMetaData();
            check(meta.getDatabaseProductName().equals("PostgreSQL"), "product " + meta.getDatabaseProductName());
            check(meta.getDatabaseMajorVersion() >= 14, "version " + meta.getDatabaseProductVersion());

            try (Statement s = c.createStatement()) {
                s.execute("CREATE TABLE jdbc_t (id BIGINT NOT NULL, name TEXT, score DOUBLE PRECISION, at TIMESTAMP, ok BOOLEAN)");
            }

            // The metadata a database browser loads first.
            Set<String> schemas = new HashSet<>();
            try (ResultSet rs = meta.getSchemas()) {
                while (rs.next()) schemas.add(rs.getString("TABLE_SCHEM"));
            }
            check(schemas.containsAll(List.of("public", "hindsight", "datasets", "eval")), "schemas " + schemas);
            try (ResultSet rs = meta.getCatalogs()) {
                check(rs.next(), "a catalog");
            }
            List<String> tables = new ArrayList<>();
            try (ResultSet rs = meta.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (rs.next()) tables.add(rs.getString("TABLE_NAME"));
            }
            check(tables.contains("jdbc_t"), "tables " + tables);
            Map<String, String> columns = new LinkedHashMap<>();
            try (ResultSet rs = meta.getColumns(null, "public", "jdbc_t", "%")) {
                while (rs.next()) columns.put(rs.getString("COLUMN_NAME"), rs.getString("TYPE_NAME") + (rs.getInt("NULLABLE") == 0 ? " not null" : ""));
            }
            check(columns.toString().equals("{id=int8 not null, name=text, score=float8, at=timestamp, ok=bool}"), "columns " + columns);

            // Batches of prepared INSERTs; past five executions pgjdbc prepares server-side.
            c.setAutoCommit(false);
            try (PreparedStatement p = c.prepareStatement("INSERT INTO jdbc_t VALUES (?, ?, ?, ?, ?)")) {
                for (int i = 0; i < 50; i++) {
                    p.setLong(1, i);
                    if (i % 5 == 0) p.setNull(2, Types.VARCHAR); else p.setString(2, "n" + i);
                    p.setDouble(3, i / 4.0);
                    p.setTimestamp(4, new Timestamp(Timestamp.valueOf("2025-01-01 00:00:00").getTime() + i * 1000L));
                    p.setBoolean(5, i % 2 == 0);
                    p.addBatch();
                }
                int[] counts = p.executeBatch();
                check(counts.length == 50, "batch counts " + counts.length);
            }
            c.commit();
            try (PreparedStatement p = c.prepareStatement("SELECT name, score, at FROM jdbc_t WHERE id = ?")) {
                for (int i = 0; i < 10; i++) {
                    p.setLong(1, 7);
                    try (ResultSet rs = p.executeQuery()) {
                        check(rs.next(), "row 7");
                        check("n7".equals(rs.getString(1)) && rs.getDouble(2) == 1.75, "row 7 values");
                        check(rs.getTimestamp(3).equals(new Timestamp(Timestamp.valueOf("2025-01-01 00:00:07").getTime())), "row 7 time " + rs.getTimestamp(3));
                    }
                }
            }

            // A fetch size outside autocommit reads the portal 7 rows at a time.
            try (Statement s = c.createStatement()) {
                s.setFetchSize(7);
                long sum = 0;
                int n = 0;
                try (ResultSet rs = s.executeQuery("SELECT id, ok FROM jdbc_t ORDER BY id")) {
                    ResultSetMetaData md = rs.getMetaData();
                    check(md.getColumnType(1) == Types.BIGINT && md.getColumnType(2) == Types.BIT, "result types");
                    while (rs.next()) {
                        sum += rs.getLong(1);
                        n++;
                    }
                }
                check(n == 50 && sum == 1225, "fetched " + n + " rows, sum " + sum);
            }
            c.commit();
            c.setAutoCommit(true);

            CopyManager copy = c.unwrap(PGConnection.class).getCopyAPI();
            long copied = copy.copyIn("COPY jdbc_t FROM STDIN WITH (FORMAT csv)", new StringReader("100,copied,1.5,2025-02-01 00:00:00,true\n101,,2.5,,false\n"));
            check(copied == 2, "copied " + copied);
            StringWriter out = new StringWriter();
            copy.copyOut("COPY (SELECT id, name FROM jdbc_t WHERE id >= 100 ORDER BY id) TO STDOUT WITH (FORMAT csv)", out);
            check(out.toString().equals("100,copied\n101,\n"), "copy out " + out);

            try (Statement s = c.createStatement()) {
                s.executeQuery("SELECT * FROM no_such_table");
                check(false, "expected an error");
            } catch (SQLException e) {
                check("42P01".equals(e.getSQLState()), "sqlstate " + e.getSQLState());
            }
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM jdbc_t")) {
                check(rs.next() && rs.getLong(1) == 52, "count after error");
            }
        }
        System.out.println("jdbc ok");
    }
}
