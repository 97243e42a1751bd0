-- Runs once, when the compose `postgres` container initialises its data directory (before
-- demo/shop.sql fills `shop`, the POSTGRES_DB): the databases the sink and the window stage
-- write into.
CREATE DATABASE shop_replica;
CREATE DATABASE shop_analytics;

\connect shop_analytics

CREATE SCHEMA analytics;
