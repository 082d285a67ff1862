/**
 * The AWS SDK types that zae-limiter's public signatures mention, under aliases.
 *
 * Each alias is the SDK's own type, so any client made with the SDK fits. They exist for the
 * docs: `deno doc --lint` takes a type of another package for a private type of this one when a
 * public signature uses it (denoland/deno#27364), and it skips a reference to a type tagged
 * `@internal`. Public signatures therefore write `aws.DynamoDBClient` (with
 * `import type * as aws from "./aws_types.ts"`) rather than the SDK's name.
 *
 * @module
 */

import type * as DynamoDB from "@aws-sdk/client-dynamodb";
import type * as DynamoDBStreams from "@aws-sdk/client-dynamodb-streams";
import type * as Lambda from "@aws-sdk/client-lambda";

/** @internal The `DynamoDBClient` of `@aws-sdk/client-dynamodb`. */
export type DynamoDBClient = DynamoDB.DynamoDBClient;

/** @internal The `AttributeValue` (one attribute of an item) of `@aws-sdk/client-dynamodb`. */
export type AttributeValue = DynamoDB.AttributeValue;

/** @internal The `DynamoDBStreamsClient` of `@aws-sdk/client-dynamodb-streams`. */
export type DynamoDBStreamsClient = DynamoDBStreams.DynamoDBStreamsClient;

/** @internal The `LambdaClient` of `@aws-sdk/client-lambda`. */
export type LambdaClient = Lambda.LambdaClient;
