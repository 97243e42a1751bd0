-- Runs once, when the compose `postgres` container initialises its data directory: the demo
-- source database `shop` with a few rows, and the empty `shop_replica` the sink writes into.
CREATE DATABASE shop;
CREATE DATABASE shop_replica;

\connect shop

CREATE TABLE customers (
    id         serial PRIMARY KEY,
    name       text NOT NULL,
    email      text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers (id),
    amount      numeric(10, 2) NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO customers (name, email)
SELECT 'customer ' || g, 'customer' || g || '@example.com'
  FROM generate_series(1, 100) AS g;

INSERT INTO orders (customer_id, amount)
SELECT 1 + (g % 100), round((5 + random() * 195)::numeric, 2)
  FROM generate_series(1, 1000) AS g;
