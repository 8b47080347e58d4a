"""Shared fixtures: one real local stack (SeaweedFS S3 + MLflow) on free ports for the whole session."""

from __future__ import annotations

import pytest

from ocrtune.platform.stack import LocalStack, free_ports
from ocrtune.platform.storage import ObjectStore, S3Settings

# fixtures kept beside their helpers: the training LMDBs, the model hub served on 127.0.0.1
pytest_plugins = ["support.train_data", "support.model_hub"]


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> LocalStack:
    s3_port, mlflow_port = free_ports(2)
    st = LocalStack(
        tmp_path_factory.mktemp("stack") / ".ocrtune",
        s3_port=s3_port,
        mlflow_port=mlflow_port,
        bucket="ocrtune-test",
    )
    st.up()
    yield st
    st.down()


@pytest.fixture(scope="session")
def stack_env(stack) -> dict[str, str]:
    return stack.env()


@pytest.fixture()
def store(stack) -> ObjectStore:
    creds = stack.credentials()
    return ObjectStore(S3Settings(stack.state.s3_url, creds.access_key, creds.secret_key, stack.state.bucket))
