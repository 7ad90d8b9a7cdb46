-- credits--1.0.sql: assembled by the Makefile from src/sql/*.sql; edit those.

\echo Use "CREATE EXTENSION credits" to load this file. \quit
