-- Athena table over the default layout (OBJECT_KEY unset):
--   OBJECT_KEY={prefix}/{yyyy}/{MM}/{dd}/{HH}/{batch}
-- keys such as raw/2026/12/07/23/<batch id>.jsonl.gz. Partition projection computes the partitions
-- from the query (no crawler, no MSCK REPAIR TABLE). Replace my-bucket, raw (S3_PREFIX) and the
-- range's start. An object sits in the hour of its batch's first event, so events of the first
-- seconds of an hour may be in the previous hour's folder: query one hour more than you need, and
-- filter on received_at (or set OBJECT_KEY to get every event under its own hour).
-- Each line is {"received_at":<ms>,"event":{...}}: `event` is kept as its JSON text, so a change
-- in the events' schema never breaks the table; the view below reads typed fields from it.
CREATE EXTERNAL TABLE IF NOT EXISTS events_raw (
  received_at bigint,
  event string
)
PARTITIONED BY (dh string)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
LOCATION 's3://my-bucket/raw/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dh.type' = 'date',
  'projection.dh.format' = 'yyyy/MM/dd/HH',
  'projection.dh.range' = '2026/01/01/00,NOW',
  'projection.dh.interval' = '1',
  'projection.dh.interval.unit' = 'HOURS',
  'storage.location.template' = 's3://my-bucket/raw/${dh}/'
);

-- Typed columns over the JSON text: add the fields your events have.
CREATE OR REPLACE VIEW events AS
SELECT
  from_unixtime(received_at / 1000e0) AS received,
  json_extract_scalar(event, '$.type') AS type,
  json_extract_scalar(event, '$.user_id') AS user_id,
  event,
  dh
FROM events_raw;

-- Events per type on one day.
SELECT type, count(*) AS events
FROM events
WHERE dh BETWEEN '2026/12/07/00' AND '2026/12/07/23'
GROUP BY type
ORDER BY events DESC;
