"""Smoke-test the local emulators started by scripts/stack.sh.

Creates a throwaway DynamoDB table and S3 bucket, writes and reads one item
and one object, then deletes them. Run it with the venv's Python after
sourcing scripts/env.sh:

    source scripts/env.sh && python scripts/check-stack.py
"""

import os
import sys
import uuid
from urllib.parse import urlsplit

import boto3

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def make_client(service, endpoint_variable):
    """Create a boto3 client and check that it targets a loopback endpoint."""
    endpoint = os.environ.get(endpoint_variable)
    if not endpoint:
        sys.exit(f"error: {endpoint_variable} is not set; source scripts/env.sh first")
    client = boto3.client(service)
    # botocore reads AWS_ENDPOINT_URL_<SERVICE> itself. The check stops the
    # test before it sends anything to AWS if that ever changes.
    host = urlsplit(client.meta.endpoint_url).hostname
    if host not in LOOPBACK_HOSTS:
        sys.exit(f"error: {service} client uses {client.meta.endpoint_url}, expected a loopback endpoint from {endpoint_variable}")
    return client


def check_dynamodb(client, suffix):
    table = f"shoprec-smoke-{suffix}"
    client.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "item_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "item_id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        item = {"item_id": {"S": "sku-1"}, "title": {"S": "smoke test"}}
        client.put_item(TableName=table, Item=item)
        stored = client.get_item(TableName=table, Key={"item_id": {"S": "sku-1"}}, ConsistentRead=True).get("Item")
        if stored != item:
            sys.exit(f"error: DynamoDB get_item returned {stored!r}, expected {item!r}")
    finally:
        client.delete_table(TableName=table)
    print(f"dynamodb ok: {client.meta.endpoint_url}, table {table} created, item read back, table deleted")


def check_s3(client, suffix):
    bucket = f"shoprec-smoke-{suffix}"
    key = "smoke/object.bin"
    body = b"shoprec smoke test\n"
    client.create_bucket(
        Bucket=bucket,
        CreateBucketConfiguration={"LocationConstraint": client.meta.region_name},
    )
    try:
        client.put_object(Bucket=bucket, Key=key, Body=body)
        stored = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        if stored != body:
            sys.exit(f"error: S3 get_object returned {stored!r}, expected {body!r}")
    finally:
        # delete_object succeeds for a missing key, so this also runs after a failed put.
        client.delete_object(Bucket=bucket, Key=key)
        client.delete_bucket(Bucket=bucket)
    print(f"s3 ok: {client.meta.endpoint_url}, bucket {bucket} created, object read back, bucket deleted")


def main():
    suffix = uuid.uuid4().hex[:8]
    check_dynamodb(make_client("dynamodb", "AWS_ENDPOINT_URL_DYNAMODB"), suffix)
    check_s3(make_client("s3", "AWS_ENDPOINT_URL_S3"), suffix)


if __name__ == "__main__":
    main()
