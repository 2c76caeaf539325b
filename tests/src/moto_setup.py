"""Prepares a fresh moto_server for Tally's object-store tests: an IAM user allowed every S3
action with an access key, the buckets named on the command line, local folders uploaded,
then authentication switched on, so a request signed with any other key is refused.
Prints the user's key as JSON: {"access_key_id": ..., "secret_access_key": ...}.

Usage: moto_setup.py ENDPOINT [--bucket NAME]... [--upload s3://BUCKET/PREFIX=LOCAL_DIR]...
"""

import json
import os
import sys
import urllib.request

import boto3


def main():
    endpoint, args = sys.argv[1], sys.argv[2:]
    buckets, uploads = [], []
    while args:
        flag, value, args = args[0], args[1], args[2:]
        (buckets if flag == "--bucket" else uploads).append(value)
    # Authentication is off until the end: these calls need no key.
    anyone = dict(
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    iam = boto3.client("iam", **anyone)
    iam.create_user(UserName="tally")
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    iam.put_user_policy(
        UserName="tally", PolicyName="s3", PolicyDocument=json.dumps(policy)
    )
    key = iam.create_access_key(UserName="tally")["AccessKey"]
    s3 = boto3.client("s3", **anyone)
    for bucket in buckets:
        s3.create_bucket(Bucket=bucket)
    for upload in uploads:
        target, local = upload.split("=", 1)
        bucket, _, prefix = target[len("s3://") :].partition("/")
        for root, _, files in os.walk(local):
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = os.path.join(root, name)
                relative = os.path.relpath(path, local)
                s3.upload_file(path, bucket, prefix.rstrip("/") + "/" + relative)
    # From now on every request must be signed with the user's key.
    request = urllib.request.Request(
        endpoint + "/moto-api/reset-auth",
        data=b"0",
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    urllib.request.urlopen(request).read()
    print(
        json.dumps(
            {
                "access_key_id": key["AccessKeyId"],
                "secret_access_key": key["SecretAccessKey"],
            }
        )
    )


if __name__ == "__main__":
    main()
